"""Grading modes on real benchmark answers: math_verify vs the released code's strict matching (where they differ),
and the released extraction ported as it is."""

import json
import re
from fractions import Fraction

import pytest

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.grading import (
    FIELD, NO_ANSWER, NO_CHOICE, Grading, released_choice, released_extract, released_last_boxed, score_choice,
    score_math)
from tests.helpers import shared_data

MATH_VERIFY, STRICT = Grading().to_json(), Grading("strict").to_json()


def graded(doc: dict, grading: str) -> dict:
    return {**doc, FIELD: grading}


def pass1(doc: dict, grading: str, *responses: str) -> float:
    return score_math(graded(doc, grading), list(responses)).pass_at_1


@pytest.fixture(scope="module")
def math500() -> list[dict]:
    return [json.loads(line) for line in shared_data("math500/test.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def aime() -> list[dict]:
    return [json.loads(line) for line in shared_data("aime24/test.jsonl").read_text().splitlines()]


def test_fractions_written_as_decimals_pass_math_verify_but_not_strict(math500):
    fractions = [r for r in math500 if re.fullmatch(r"\\frac\{\d+\}\{\d+\}", r["answer"])]
    decimal = [(r, Fraction(*map(int, re.findall(r"\d+", r["answer"])))) for r in fractions]
    decimal = [(r, value) for r, value in decimal if len(str(float(value))) <= 8]  # terminating, short decimals
    assert len(decimal) >= 5
    for row, value in decimal:
        as_decimal = f"... so the answer is $\\boxed{{{float(value)}}}$."
        as_dfrac = f"\\boxed{{{row['answer'].replace('frac', 'dfrac')}}}"
        assert pass1(row, MATH_VERIFY, as_decimal) == 1.0, (row["answer"], as_decimal)
        assert pass1(row, STRICT, as_decimal) == 0.0
        assert pass1(row, MATH_VERIFY, as_dfrac) == 1.0 and pass1(row, STRICT, as_dfrac) == 0.0
        assert pass1(row, STRICT, f"\\boxed{{{row['answer']}}}") == 1.0  # the gold string itself


def test_every_math500_solution_passes_both_modes_and_strict_agrees_with_its_own_extraction(math500):
    strict = [pass1(r, STRICT, r["solution"]) for r in math500]
    verified = [pass1(r, MATH_VERIFY, r["solution"]) for r in math500]
    print(f"MATH-500 gold solutions correct: strict {sum(strict)}/500, math_verify {sum(verified)}/500")
    assert sum(strict) == 500 and sum(verified) >= 495  # the gold is the solution's last box, as released extracts


def test_a_response_without_an_answer_counts_as_zero_under_strict(math500):
    zero = next(r for r in math500 if r["answer"] == "0")
    other = next(r for r in math500 if r["answer"] == "\\frac{14}{3}")
    silent = "I am not sure how to finish this."
    assert pass1(zero, STRICT, silent) == 1.0  # the released code records "0" and compares it to the gold
    assert pass1(zero, MATH_VERIFY, silent) == 0.0 and pass1(other, STRICT, silent) == 0.0


def test_aime_zero_padding_and_answer_lines(aime):
    padded = [r for r in aime if r["answer"].startswith("0")]
    assert len(padded) == 7
    for row in padded:
        value = int(row["answer"])
        for response in (f"\\boxed{{{value}}}", f"\\boxed{{{row['answer']}}}", f"Answer: {value}"):
            assert pass1(row, STRICT, response) == 1.0 and pass1(row, MATH_VERIFY, response) == 1.0, response
        # the released Answer pattern keeps the trailing newline and what follows; math_verify reads the line
        assert pass1(row, STRICT, f"Answer: {value}\n") == 0.0 and pass1(row, MATH_VERIFY, f"Answer: {value}\n") == 1.0
        as_float, wrong = f"\\boxed{{{value}.0}}", f"\\boxed{{{value + 1}}}"
        assert pass1(row, STRICT, as_float) == 0.0 and pass1(row, MATH_VERIFY, as_float) == 1.0
        assert pass1(row, STRICT, wrong) == pass1(row, MATH_VERIFY, wrong) == 0.0


def test_strict_majority_counts_strings_and_lets_missing_answers_vote(aime):
    row = next(r for r in aime if r["answer"] == "023")
    samples = ["no idea", "Still no idea", "\\boxed{23}", "\\boxed{023}"]
    strict = score_math(graded(row, STRICT), samples)
    assert strict.answers == (NO_ANSWER, NO_ANSWER, "23", "23")
    assert strict.maj == {1: False, 2: False, 4: False}  # "0" x2 vs "23" x2: the tie goes to the first seen, "0"
    loose = score_math(graded(row, MATH_VERIFY), samples)
    assert loose.maj == {1: False, 2: False, 4: True}  # missing answers abstain


def test_gpqa_strict_needs_a_bare_letter():
    doc = {"answer": "B", "Question": "q", **{f"choice{i}": f"c{i}" for i in (1, 2, 3, 4)}}

    def both(response: str) -> tuple[float, float]:
        return tuple(score_choice(graded(doc, g), [response]).pass_at_1 for g in (STRICT, MATH_VERIFY))

    assert both("Thinking...\nAnswer: B") == (1.0, 1.0)
    assert both("Answer: b") == (1.0, 1.0)
    assert both("**Answer:** B") == (0.0, 1.0)  # the released pattern captures "** B"
    assert both("Answer: B) c2") == (0.0, 1.0)
    assert both("Answer: A\nOn reflection, Answer: B") == (0.0, 1.0)  # re.DOTALL: from the first "Answer:" on
    assert both("\\boxed{B}") == (1.0, 1.0)
    assert released_choice("I pick B.") == NO_CHOICE


def released_reference(string: str) -> str | None:
    """The released code's last_boxed_only_string + remove_boxed, verbatim (SAE-Reasoning @ 2cbfbff,
    lm_eval/tasks/hendrycks_math/openai_utils.py); its assertion failures read as None."""
    idx = string.rfind("\\boxed")
    if "\\boxed " in string:
        box = "\\boxed " + string.split("\\boxed ")[-1].split("$")[0]
    else:
        if idx < 0:
            idx = string.rfind("\\fbox")
            if idx < 0:
                return None
        i, right_brace_idx, num_left_braces_open = idx, None, 0
        while i < len(string):
            if string[i] == "{":
                num_left_braces_open += 1
            if string[i] == "}":
                num_left_braces_open -= 1
                if num_left_braces_open == 0:
                    right_brace_idx = i
                    break
            i += 1
        box = None if right_brace_idx is None else string[idx : right_brace_idx + 1]
    if box is None:
        return None
    if "\\boxed " in box:
        return box[len("\\boxed ") :]
    if not (box.startswith("\\boxed{") and box.endswith("}")):
        return None
    return box[len("\\boxed{") : -1]


@pytest.mark.parametrize("text", [
    "x \\boxed{1} y \\boxed{\\frac{1}{2}} z", "\\boxed{ 5 }", "\\boxed 5$ and later \\boxed{6}", "\\fbox{7}",
    "\\boxed{unclosed", "no box", "\\boxed{a}\\fbox{b}", "\\boxed{{nested}{x}}", "\\boxed}{3}",
])
def test_released_boxed_extraction_matches_the_released_functions(text):
    assert released_last_boxed(text) == released_reference(text)


def test_released_answer_pattern_spans_to_the_end():
    assert released_extract("Answer: 5\nthen Answer: 6") == "5\nthen Answer: 6"
    assert released_extract("nothing") is None and released_extract("\\boxed{2} Answer: 3") == "2"


def test_unknown_grading_is_a_one_line_user_error():
    with pytest.raises(UserError, match=r"^unknown benchmark.grading 'exact': use one of math_verify, strict, llm$"):
        Grading.from_settings("exact")
    assert Grading.of({}) == Grading() and Grading.from_settings(None).key() is None
    assert Grading.from_settings("strict").key() == {"mode": "strict"}
