import json

import pytest

from reasoning_sae.vocab import frequency, frequency_table, kept_rank, top_words, words
from tests.helpers import shared_data

GENERAL = {"wait": 2e-4, "the": 5e-2, "hmm": 1e-5, "x": 1e-4, "so": 3e-3, "equals": 1e-5, "let's": 5e-4}


@pytest.fixture
def fake_general(monkeypatch):
    monkeypatch.setattr(frequency, "general_frequency", lambda w: GENERAL.get(w, 0.0))


def test_words_lowercase_letters_and_apostrophes():
    assert words("Wait, LET'S see: x=2 \\frac{1}{2}... Hmm") == ["wait", "let's", "see", "x", "frac", "hmm"]


def test_hand_made_example_number_by_number(fake_general):
    reasoning = ["Wait the x", "hmm wait so so"]          # 7 words: wait 2, the 1, x 1, hmm 1, so 2
    solutions = ["the x equals", "the x"]                   # 5 words: the 2, x 2, equals 1
    table = frequency_table(reasoning, solutions, top_k=2, threshold=1e-3).set_index("word")
    assert table.loc["wait", ["count_think", "count_solution"]].tolist() == [2, 0]
    assert table.loc["the", ["count_think", "count_solution"]].tolist() == [1, 2]
    assert table.loc["wait", "p_think"] == pytest.approx(2 / 7) and table.loc["wait", "p_solution"] == 0
    assert table.loc["x", "diff"] == pytest.approx(1 / 7 - 2 / 5)
    assert table.loc["equals", "diff"] == pytest.approx(-1 / 5)
    # diff: so 2/7, wait 2/7, hmm 1/7, the 1/7-2/5, x 1/7-2/5, equals -1/5 -> ties broken by word
    assert table["rank"].to_dict() == {"so": 1, "wait": 2, "hmm": 3, "equals": 4, "the": 5, "x": 6}
    assert table.loc["so", "filtered"] and table.loc["the", "filtered"] and not table.loc["wait", "filtered"]
    assert table.loc["the", "general_frequency"] == 5e-2
    assert table.index[table["kept"]].tolist() == ["wait", "hmm"]  # top 2 unfiltered; "so" is filtered
    assert kept_rank(table.reset_index(), "hmm") == 2 and kept_rank(table.reset_index(), "so") is None
    assert top_words(table.reset_index())["word"].tolist() == ["so", "wait", "hmm"]


def test_threshold_min_count_and_dtypes(fake_general):
    table = frequency_table(["wait wait the the so"], ["the x"], top_k=40, threshold=1.0, min_count=2)
    assert set(table["word"]) == {"wait", "the"} and not table["filtered"].any()
    assert table.loc[table["word"] == "the", "p_solution"].item() == pytest.approx(0.5)  # share before the drop
    assert str(table["word"].dtype) == "string" and table["count_think"].dtype == "int64"
    assert table["filtered"].dtype == bool and table["kept"].all()


def test_empty_input_gives_an_empty_table(fake_general):
    table = frequency_table([], [])
    assert len(table) == 0 and top_words(table).empty


def _r1_pairs(kind: str) -> tuple[list[str], list[str]]:
    """DeepSeek-R1 traces (cut at </think>) and reference solutions: MATH-500 `solution`, GSM8K `answer`."""
    path = shared_data(f"reasoning_traces/mip_overthinking/response/{kind}/normal/deepseekR1/response.json")
    items = json.loads(path.read_text())
    reference = "solution" if kind == "math" else "answer"
    return ([it["deepseek-reasoner (question)"].partition("</think>")[0] for it in items],
            [it[reference] for it in items])


@pytest.mark.parametrize("kind", ["math", "gsm8k"])
def test_real_r1_traces_rank_reasoning_words_high(kind):
    reasoning, solutions = _r1_pairs(kind)
    table = frequency_table(reasoning, solutions, top_k=40, threshold=1e-3, min_count=5)
    for word in ("wait", "hmm", "maybe", "alternatively"):
        assert kept_rank(table, word) <= 40, word
        assert table.loc[table["word"] == word, "kept"].item()
    row = table.set_index("word")
    assert row.loc["the", "filtered"] and row.loc["but", "filtered"]  # "but": above the threshold, as in the paper
    assert row.loc["but", "rank"] <= 10 and row.loc["wait", "diff"] > 0
