"""Smoke test of the per-architecture training-step benchmark on tiny shapes: the keys and positive numbers (no
timing thresholds: the machine's load decides those), and that both sides start from the same weights."""

import math

import torch

from reasoning_sae.bench import sae_arch


def test_run_and_report_on_tiny_shapes():
    result = sae_arch.run(d_in=16, d_sae=64, batch=32, k=4, repeats=1)
    keys = ["floor_ms"] + [f"{a}_{what}" for a in sae_arch.ARCHITECTURES
                           for what in ("ms", "sae_lens_ms", "over_floor", "speedup_vs_sae_lens")]
    for key in keys:
        assert math.isfinite(result[key]) and result[key] > 0, key
    text = sae_arch.report(result)
    assert all(f"{a}, ours" in text for a in sae_arch.ARCHITECTURES) and "SAELens" in text and "target" in text


def test_both_sides_start_from_the_same_weights():
    for arch in sae_arch.ARCHITECTURES:
        ours, theirs, _ = sae_arch._pair(arch, 16, 64, 4, seed=0)
        for name in sae_arch.PARAMS:
            assert torch.equal(getattr(ours, name), getattr(theirs, name)), (arch, name)
        x = torch.randn(8, 16)
        if arch == "jumprelu":  # the same function, not only the same tensors
            assert torch.allclose(ours.encode(x), theirs.encode(x))
