"""Smoke test of the one-pass multi-SAE benchmark on the tiny model: the keys, positive numbers, and the LM forwards
each variant makes (no timing thresholds: the machine's load decides those)."""

import math

from reasoning_sae.bench import multi_sae


def test_run_and_report_count_one_forward_per_round_for_all_saes(tiny_llama_dir, monkeypatch):
    from reasoning_sae.models import load_lm
    from reasoning_sae.models.lm import LanguageModel

    lm = load_lm({"name": str(tiny_llama_dir), "n_layers": 4, "d_model": 32})
    calls = []
    real = LanguageModel.activations
    monkeypatch.setattr(LanguageModel, "activations",
                        lambda self, ids, hook="", attention_mask=None: calls.append(hook) or real(self, ids, hook))
    result = multi_sae.run(lm, layers=(1, 2, 3), sequences=2, seq_len=8, repeats=2)
    for key in ("floor_ms", "multi_ms", "separate_ms", "multi_over_floor", "speedup_vs_separate"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    multi = [h for h in calls if isinstance(h, list)]
    single = [h for h in calls if isinstance(h, str)]
    rounds = result["repeats"] + 1  # and the warm-up round
    # the floor's batches, read once; a buffer's first fill reads two chunks, then one per step: the shared reader
    # once for the three SAEs
    assert len(multi) == 1 + rounds + 1 and all(len(h) == 3 for h in multi)
    assert len(single) == 3 * (rounds + 1) + rounds  # three separate runs, and the floor's one forward per round
    text = multi_sae.report(result)
    assert "from one LM pass" in text and "x floor" in text and "separate runs" in text
