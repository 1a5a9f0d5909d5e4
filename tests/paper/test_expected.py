"""paper/expected/: every file loads, the numbers match DIGEST.md, every quantity has a positive tolerance."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from reasoning_sae.errors import UserError
from reasoning_sae.paper_expected import EXPECTED_DIR, list_expected, load_expected, table_records

REQUIRED = {"table1", "table1_v1", "table2", "table3", "table4", "fig2", "fig4", "fig5", "fig6",
            "sae_quality", "reasonscore"}


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every mapping in a document, with its dotted path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _check_tolerance(tol: Any, where: str) -> None:
    assert isinstance(tol, dict), f"{where}: tolerance missing"
    kinds = {"abs", "rel"} & tol.keys()
    assert len(kinds) == 1, f"{where}: tolerance needs exactly one of abs/rel, got {tol}"
    size = tol[kinds.pop()]
    assert _is_number(size) and size > 0, f"{where}: tolerance must be positive, got {size}"
    assert isinstance(tol.get("why"), str) and tol["why"].strip(), f"{where}: tolerance needs a 'why'"


def _row(name: str, key: Any) -> dict[str, Any]:
    records = {r[load_expected(name)["table"]["key"]]: r for r in table_records(load_expected(name)["table"])}
    return records[key]


def test_required_files_present_and_load():
    names = list_expected()
    assert REQUIRED <= set(names), f"missing: {REQUIRED - set(names)}"
    for name in names:
        doc = load_expected(name)
        assert doc["name"] == name
        assert doc["title"] and doc["source"]["digest"].startswith("§") and doc["source"]["paper"]
        assert doc["source"]["version"] in {"v1", "v2"}
        # the header comment cites the digest too
        assert (EXPECTED_DIR / f"{name}.yaml").read_text().startswith("#")


@pytest.mark.parametrize("name", list_expected())
def test_every_numeric_quantity_has_a_positive_tolerance(name):
    doc = load_expected(name)
    n_checked = 0
    for path, node in _walk(doc):
        if path.startswith("settings") or ".settings" in path:
            continue  # configuration, used exactly
        if "value" in node or "values" in node:
            values = node.get("values", [node.get("value")])
            if all(v is None for v in values):
                assert isinstance(node.get("reason"), str) and node["reason"], f"{name}.{path}: null needs a reason"
                continue
            assert all(_is_number(v) for v in values), f"{name}.{path}: non-numeric value {values}"
            _check_tolerance(node.get("tolerance"), f"{name}.{path}")
            n_checked += 1
        if "columns" in node and "rows" in node:
            columns = node["columns"]
            assert node["key"] == columns[0]
            for row in node["rows"]:
                assert len(row) == len(columns), f"{name}.{path}: row {row} does not match {columns}"
            for i, column in enumerate(columns[1:], start=1):
                cells = [row[i] for row in node["rows"]]
                if any(_is_number(c) for c in cells):
                    _check_tolerance(node["tolerance"].get(column), f"{name}.{path}.{column}")
                    assert column in node.get("units", {}), f"{name}.{path}: no unit for {column}"
                    n_checked += 1
    if name not in {"fig2", "fig5", "table2_v1", "feature_interfaces", "tables5_9", "reasonscore"}:
        assert n_checked, f"{name}: no quantity found"


def test_table1_matches_digest():
    doc = load_expected("table1")
    assert doc["source"]["version"] == "v2" and doc["settings"]["metric"] == "maj@4"
    assert doc["settings"]["gamma"] == 2.0
    assert _row("table1", 61104)["aime2024_maj4"] == 66.7
    assert _row("table1", "no_steering") == {
        "feature": "no_steering", "aime2024_maj4": 53.3, "aime2024_tokens_k": 12.4, "math500_maj4": 93.2,
        "math500_tokens_k": 3.9, "gpqa_diamond_maj4": 50.0, "gpqa_diamond_tokens_k": 7.9}
    assert _row("table1", 4395)["math500_maj4"] == 95.4
    assert _row("table1", 16778)["math500_tokens_k"] == 4.7
    assert [r[0] for r in doc["table"]["rows"]][1:] == [3942, 4395, 16441, 16778, 25953, 46691, 61104]
    assert doc["missing_rows"]["count"] == 3 and doc["missing_rows"]["feature_ids"] is None
    # accuracy granularity: 53.3 = 16/30 on AIME, 50.0 = 99/198 on GPQA
    assert round(16 / 30 * 100, 1) == 53.3 == _row("table1", "no_steering")["aime2024_maj4"]
    for shown, correct in doc["granularity"]["aime2024"]["examples"].items():
        assert round(correct / 30 * 100, 1) == float(shown)
    assert round(99 / 198 * 100, 1) == 50.0
    tol = doc["table"]["tolerance"]
    assert tol["aime2024_maj4"]["abs"] >= 100 / 30  # at least one AIME problem of slack
    assert tol["math500_tokens_k"]["rel"] == 0.15


def test_table1_v1_and_headline():
    assert _row("table1_v1", "no_steering")["aime2024_pass1"] == 46.6
    assert _row("table1_v1", 15136)["aime2024_pass1"] == 60.0
    assert _row("table1_v1", 46379)["aime2024_tokens_k"] == 15.5
    claims = load_expected("headline")["claims"]
    t1 = {r["feature"]: r for r in table_records(load_expected("table1")["table"])}
    base = t1["no_steering"]
    # the headline claims are Table 1 deltas (the -7.7% for #3942 is the paper's inconsistency, DIGEST §9.3)
    assert math.isclose(claims["intro_aime_accuracy"]["value"], t1[61104]["aime2024_maj4"] - base["aime2024_maj4"],
                        abs_tol=0.05)
    assert math.isclose(claims["abstract_accuracy"]["value"], t1[4395]["math500_maj4"] - base["math500_maj4"],
                        abs_tol=0.05)
    assert round((t1[16778]["math500_tokens_k"] / base["math500_tokens_k"] - 1) * 100, 1) == claims["abstract_length"]["value"]
    assert round((t1[4395]["aime2024_tokens_k"] / base["aime2024_tokens_k"] - 1) * 100, 1) == claims["intro_aime_length"]["value"]


def test_table2_word_ban():
    assert _row("table2", "reason") == {
        "ban": "reason", "aime2024_acc": 20.0, "aime2024_tokens_k": 9.1, "math500_acc": 86.6,
        "math500_tokens_k": 2.5, "gpqa_diamond_acc": 41.9, "gpqa_diamond_tokens_k": 5.7}
    assert _row("table2", "random")["aime2024_acc"] == 48.6
    assert load_expected("table2")["settings"]["random_repeats"] == 10
    # the Default row equals Table 1's no-steering row (the metric ambiguity of DIGEST §9.3)
    default = list(_row("table2", "default").values())[1:]
    assert default == list(_row("table1", "no_steering").values())[1:]


def test_table3_rows_sum_to_100():
    rows = table_records(load_expected("table3")["table"])
    assert [r["layer"] for r in rows] == [13, 15, 17, 21, 23]
    assert rows[0]["reasoning_diff"] == 52.5 and rows[-1]["reasoning_same"] == 60.5
    for r in rows:
        assert math.isclose(r["reasoning_diff"] + r["reasoning_maybe"] + r["reasoning_same"], 100.0)
        assert math.isclose(r["random_diff"] + r["random_maybe"] + r["random_same"], 100.0)


def test_table4_groups_and_fig3b_counts():
    doc = load_expected("table4")
    groups = doc["groups"]
    assert len(groups) == doc["n_groups"]["value"] == 10
    ids = [f for g in groups for f in g["features"]]
    assert len(ids) == 52 and len(set(ids)) == 51  # #16778 in two groups (DIGEST §9.3)
    assert {g["name"]: g["features"] for g in groups}["Other Behavior"] == [48792, 9977, 20046, 12036, 32134]
    assert len(groups[-1]["features"]) == doc["n_other_behavior"]["value"]
    counts = {r["group"]: r["n_features_printed"] for r in table_records(load_expected("fig3b")["table"])}
    assert counts == {g["name"]: len(g["features"]) for g in groups}
    assert 61104 in ids and 3942 in ids


def test_vocabulary_matches_the_package():
    from reasoning_sae.vocab.vocabulary import DEFAULT_VOCABULARY, groups

    fig5 = load_expected("fig5")
    assert fig5["words"] == ["alternatively", "hmm", "maybe", "wait", "perhaps", "let me", "therefore",
                             "however", "but", "another"]
    assert len(DEFAULT_VOCABULARY) == fig5["settings"]["n_surface_forms"] == 34
    assert list(groups(DEFAULT_VOCABULARY)) == fig5["words"]
    assert load_expected("fig2")["settings"]["top_words_plotted"] == 40
    assert load_expected("fig2")["ngram_threshold"]["value"] is None


def test_diffing_scores_and_sae_quality():
    fig4 = {r["stage"]: r for r in table_records(load_expected("fig4")["table"])}
    assert fig4["S->D->F"]["f_r_present_pct"] == 78.0 and fig4["S->D->F"]["manual_present_pct"] == 60.0
    assert fig4["S->M->F"]["manual_present_pct"] == 51.0 and fig4["S->D"]["manual_present_pct"] == 4.0
    assert fig4["S"]["f_r_present_pct"] is None  # not assignable from the text copy
    assert sorted(load_expected("fig4")["f_r_unassigned"]["values"]) == [6.0, 9.0, 17.0]
    rs = load_expected("reasonscore")["settings"]
    assert (rs["window_before"], rs["window_after"], rs["alpha"], rs["quantile"]) == (2, 3, 0.7, 0.997)
    assert load_expected("reasonscore")["released_code"]["window_before"] == 1
    fig6 = load_expected("fig6")
    assert fig6["f_r_size"]["value"] == 200
    assert abs((1 - fig6["settings"]["quantile"]) * fig6["settings"]["n_features"] - 200) <= fig6["f_r_size"]["tolerance"]["abs"]
    sae = load_expected("sae_quality")
    assert sae["l0"]["value"] == 86 and sae["variance_explained"]["value"] == 68.5
    assert sae["dead_features"]["value"] is None and sae["dead_features"]["reason"]


def test_expected_agrees_with_the_score_config():
    conf = yaml.safe_load((EXPECTED_DIR.parents[1] / "conf" / "score" / "paper_v2.yaml").read_text())
    rs = load_expected("reasonscore")["settings"]
    assert conf["window"] == [rs["window_before"], rs["window_after"]]
    assert conf["alpha"] == rs["alpha"] and conf["q"] == rs["quantile"]


def test_unknown_name_is_a_one_line_user_error():
    with pytest.raises(UserError) as err:
        load_expected("table99")
    message = str(err.value)
    assert "\n" not in message and "table99" in message and "table1" in message
