"""Smoke test of the falsify benchmark on small shapes: the tokens it counts and the report (no timing thresholds:
the machine's load decides those)."""

import math

from reasoning_sae.bench import falsify
from tests.helpers import random_sae


def test_run_and_report_on_small_shapes(smollm2):
    result = falsify.run(smollm2, random_sae(d_sae=48), n_sequences=2, seq_len=64, repeats=1)
    assert result["features"] == 48 and result["tokens"] % 64 == 0 and result["tokens"] > 4 * 2 * 64 - 1
    assert all(math.isfinite(result[k]) and result[k] > 0 for k in ("ours_s", "reasonscore_s"))
    text = falsify.report(result)
    assert "ours / ReasonScore" in text and "target <= 1.2x" in text and f"{result['tokens']} tokens" in text
