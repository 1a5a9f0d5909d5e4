import json
import re
from collections import Counter

import pytest

from reasoning_sae.data.demo import DOMAINS, chat_rows, reasoning_rows

REASONING_KEYS = {"problem", "deepseek_reasoning", "deepseek_solution", "ground_truth_solution", "domain", "source",
                  "test_cases", "starter_code"}
HESITATION = ("wait", "hmm", "alternatively", "maybe", "perhaps")


@pytest.fixture(scope="module")
def rows():
    return reasoning_rows(360, seed=3)


@pytest.fixture(scope="module")
def chats():
    return chat_rows(200, seed=3)


def _per_thousand(texts, word):
    tokens = [t for text in texts for t in re.findall(r"[a-z']+", text.lower())]
    return 1000 * Counter(tokens)[word] / len(tokens)


def _boxed(text):
    return re.findall(r"\\boxed\{([^{}]*)\}", text)


def test_reasoning_rows_follow_the_openthoughts_schema(rows):
    for row in rows:
        assert set(row) == REASONING_KEYS
        assert all(isinstance(v, str) for v in row.values())
        assert row["source"] == "reasoning_sae.demo" and row["domain"] in DOMAINS
        assert row["problem"] and row["deepseek_reasoning"] and row["ground_truth_solution"]


def test_chat_rows_follow_the_lmsys_schema(chats):
    for row in chats:
        assert set(row) == {"conversation_id", "model", "conversation", "turn", "language"}
        assert row["model"] == "reasoning_sae.demo" and row["language"] == "English"
        assert re.fullmatch(r"[0-9a-f]{32}", row["conversation_id"])
        conv = row["conversation"]
        assert 1 <= row["turn"] <= 3 and len(conv) == 2 * row["turn"]
        assert [m["role"] for m in conv] == ["user", "assistant"] * row["turn"]
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in conv)
    assert len({row["conversation_id"] for row in chats}) == len(chats)


def test_same_seed_is_identical_and_prefix_stable():
    assert reasoning_rows(40, seed=7) == reasoning_rows(40, seed=7)
    assert reasoning_rows(15, seed=7) == reasoning_rows(40, seed=7)[:15]
    assert chat_rows(30, seed=7) == chat_rows(30, seed=7)
    assert chat_rows(10, seed=7) == chat_rows(30, seed=7)[:10]


def test_different_seeds_give_different_rows():
    a, b = reasoning_rows(30, seed=0), reasoning_rows(30, seed=1)
    assert sum(x["problem"] != y["problem"] for x, y in zip(a, b)) > 20
    assert chat_rows(30, seed=0) != chat_rows(30, seed=1)


def test_every_domain_appears_in_equal_measure(rows):
    counts = Counter(row["domain"] for row in rows)
    assert set(counts) == set(DOMAINS)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_rows_are_varied(rows, chats):
    assert len({row["problem"] for row in rows}) > 0.95 * len(rows)
    assert len({row["deepseek_reasoning"] for row in rows}) == len(rows)
    answers = [m["content"] for row in chats for m in row["conversation"] if m["role"] == "assistant"]
    assert len(set(answers)) > 0.9 * len(answers)


def test_hesitation_words_are_far_more_frequent_in_traces_than_in_reference_solutions(rows):
    traces = [row["deepseek_reasoning"] for row in rows]
    references = [row["ground_truth_solution"] for row in rows]
    for word in HESITATION:
        in_traces = _per_thousand(traces, word)
        assert in_traces > 1.0, word
        assert in_traces > 10 * _per_thousand(references, word), word


def test_reference_solutions_avoid_hesitation_phrases(rows):
    for row in rows:
        text = row["ground_truth_solution"].lower()
        assert not re.search(r"\b(wait|hmm|alternatively|maybe|perhaps|let me|another)\b", text), text


def test_chat_rarely_uses_reasoning_hesitation(rows, chats):
    answers = [m["content"] for row in chats for m in row["conversation"] if m["role"] == "assistant"]
    traces = [row["deepseek_reasoning"] for row in rows]
    for word in ("wait", "hmm", "alternatively"):
        assert _per_thousand(answers, word) == 0, word
    for word in ("maybe", "perhaps"):
        assert _per_thousand(traces, word) > 3 * _per_thousand(answers, word), word


def test_trace_style_and_length(rows):
    words = sorted(len(row["deepseek_reasoning"].split()) for row in rows)
    assert 120 <= words[len(words) // 2] <= 500
    assert words[-1] > 1.5 * words[0]
    for row in rows:
        trace = row["deepseek_reasoning"]
        assert trace.startswith(("Okay", "Alright", "First"))
        assert "\n\n" in trace


def test_chat_answers_have_ordinary_length(chats):
    for row in chats:
        for m in row["conversation"][1::2]:
            assert 40 <= len(m["content"].split()) <= 250


def test_no_think_tags_anywhere(rows, chats):
    blob = json.dumps(rows) + json.dumps(chats)
    assert "<think>" not in blob and "</think>" not in blob


def test_boxed_answers_agree_between_solution_and_reference(rows):
    boxed_rows = [row for row in rows if row["domain"] != "code"]
    for row in boxed_rows:
        final, reference = _boxed(row["deepseek_solution"]), _boxed(row["ground_truth_solution"])
        assert len(final) == 1 and final == reference, row["problem"]
        assert final[0] in row["deepseek_reasoning"]
    assert sum(row["domain"] == "math" for row in boxed_rows) == 60


def test_linear_equation_answers_are_correct():
    checked = 0
    for row in reasoning_rows(600, seed=11):
        m = re.search(r"Solve for x: (\d+)x \+ (\d+) = (-?\d+)\.", row["problem"])
        if m:
            a, b, c = map(int, m.groups())
            assert a * int(_boxed(row["deepseek_solution"])[0]) + b == c
            checked += 1
    assert checked > 5


def test_code_ground_truth_passes_its_test_cases(rows):
    code_rows = [row for row in rows if row["domain"] == "code"]
    assert len(code_rows) == 60
    for row in code_rows:
        cases = json.loads(row["test_cases"])
        source = re.search(r"```python\n(.*?)```", row["ground_truth_solution"], re.S).group(1)
        namespace: dict = {}
        exec(compile(source, "<demo>", "exec"), namespace)
        fn = namespace[cases["fn_name"]]
        assert len(cases["inputs"]) == len(cases["outputs"]) >= 3
        for args, expected in zip(cases["inputs"], cases["outputs"]):
            assert fn(*args) == expected
        assert row["starter_code"] in ("", f"def {cases['fn_name']}({source.split('(')[1].split(')')[0]}):")
        assert source in row["deepseek_solution"]
