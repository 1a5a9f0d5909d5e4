"""The diff stage's Markdown: Fig. 4's presence table and Table 3's layout, byte for byte."""

import pandas as pd

from reasoning_sae.diff.presence import PRESENCE_COLUMNS
from reasoning_sae.diff.tables import fig4, pct, table3


def test_pct_is_one_decimal_and_a_dash_for_nan():
    assert (pct(0.1234), pct(1.0), pct(0.0), pct(float("nan"))) == ("12.3", "100.0", "0.0", "-")


def test_fig4_lists_each_trajectory_with_its_counts():
    row = dict.fromkeys(PRESENCE_COLUMNS)
    presence = pd.DataFrame([{**row, "trajectory": "S", "fr_present": 1, "fr_total": 4, "fr_share": 0.25,
                              "set_present": 0, "set_total": 0, "set_share": float("nan")},
                             {**row, "trajectory": "S->D", "fr_present": 3, "fr_total": 4, "fr_share": 0.75,
                              "set_present": 2, "set_total": 3, "set_share": 2 / 3}], columns=PRESENCE_COLUMNS)
    assert fig4(presence, "random", 0.7) == (
        "Features of the main SAE present (decoder cosine >= 0.7) in each stage's SAE, %.\n\n"
        "| Stage | F_R | random |\n|---|---|---|\n| S | 25.0 (1/4) | - (0/0) |\n| S->D | 75.0 (3/4) | 66.7 (2/3) |\n")
    assert fig4(presence.iloc[:0], "chosen set", 0.5).endswith("| Stage | F_R | chosen set |\n|---|---|---|\n")


def test_table3_has_one_row_per_layer_reasoning_then_random():
    def row(layer, name, diff, maybe, same):
        return {"layer": layer, "set": name, "share_diff": diff, "share_maybe": maybe, "share_same": same}

    counts = pd.DataFrame([row(3, "random", 0.5, 0.25, 0.25), row(3, "reasoning", 0.1, 0.2, 0.7),
                           row(1, "reasoning", 1.0, 0.0, 0.0), row(1, "random", float("nan"), 0.0, 0.0)])
    text = table3(counts, 2, 200, 100, 12345, "tiny", "dot")
    assert text == (
        "Cross-layer matching from layer 2 of tiny: % of 200 reasoning features (F_R) and 100 random features, "
        "matched by the Hungarian method on decoder dot products, matching score over 12,345 tokens.\n\n"
        "| Layer | Reasoning diff | maybe | same | Random diff | maybe | same |\n|---|---|---|---|---|---|---|\n"
        "| 1 | 100.0 | 0.0 | 0.0 | - | 0.0 | 0.0 |\n| 3 | 10.0 | 20.0 | 70.0 | 50.0 | 25.0 | 25.0 |\n")
    assert "on decoder cosines," in table3(counts, 2, 200, 100, 1, "tiny", "cosine")
