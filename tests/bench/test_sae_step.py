"""Smoke test of the SAE training-step benchmark on tiny shapes: the keys and positive numbers (no timing
thresholds: the machine's load decides those)."""

import math

from reasoning_sae.bench import sae_step

TIMES = ("floor_ms", "standard_ms", "sae_lens_ms", "adam_ms", "adam_other_ms", "topk_ms", "topk_sae_lens_ms")
RATIOS = ("standard_over_floor", "sae_lens_over_floor", "speedup_vs_sae_lens", "adam_share", "standard_over_floor_best",
          "speedup_vs_sae_lens_best", "topk_speedup_vs_sae_lens")


def test_run_and_report_on_tiny_shapes():
    result = sae_step.run(d_in=16, d_sae=64, batch=32, k=4, repeats=1)
    assert {"d_in", "d_sae", "batch", "k", "repeats", "threads", "fused_adam", "lr", "topk_sparsify_ms",
            "topk_speedup_vs_sparsify"} | set(TIMES) | set(RATIOS) <= set(result)
    for key in TIMES + RATIOS:
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert (result["topk_sparsify_ms"] is None) == (result["topk_speedup_vs_sparsify"] is None)
    text = sae_step.report(result)
    assert "5-GEMM floor" in text and "SAELens" in text and "target" in text
    if result["topk_sparsify_ms"] is None:
        assert "sparsify not installed: skipped" in text


def test_floor_runs_the_five_gemms():
    import torch
    from torch.overrides import TorchFunctionMode

    class RecordMatmuls(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.mm:
                self.calls.append((args[0], args[1], kwargs.get("out")))
            return func(*args, **kwargs)

    B, D, F = 8, 4, 16
    floor = sae_step.gemm_floor(B, D, F, torch.Generator().manual_seed(0))
    with RecordMatmuls() as record:
        floor()
    # the five GEMMs of a standard step: encoder, decoder, grad W_dec, d_feats, grad W_enc, each into its own
    # preallocated output, and nothing else that could count towards the floor
    shapes = [(tuple(a.shape), tuple(b.shape)) for a, b, _ in record.calls]
    assert shapes == [((B, D), (D, F)), ((B, F), (F, D)), ((F, B), (B, D)), ((B, D), (D, F)), ((D, B), (B, F))]
    outs = [out for _, _, out in record.calls]
    assert all(out is not None for out in outs) and len({out.data_ptr() for out in outs}) == 5
    for a, b, out in record.calls:
        torch.testing.assert_close(out, a @ b)


def test_steering_and_score_benchmarks_report(smollm2):
    from reasoning_sae.bench import score, steering
    from tests.helpers import random_sae

    sae = random_sae(d_sae=64)
    r = steering.run(smollm2, sae, new_tokens=2, repeats=1)
    assert {"unsteered", "ours", "released"} <= set(r) and all(r[k] > 0 for k in ("unsteered", "ours", "released"))
    assert "rank-1 hook" in steering.report(r)
    s = score.run(smollm2, sae, n_sequences=2, seq_len=32, repeats=1, batch_sequences=2)
    assert s["passes"] == 2 and s["ours_s"] > 0 and "released strategy" in score.report(s)
    assert s["diffmean_s"] > 0 and "with the DiffMean sums" in score.report(s)
