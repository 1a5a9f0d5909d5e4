import pytest

from reasoning_sae.evaluate.answers import (
    extract_answer,
    extract_choice,
    extract_lenient,
    is_equivalent,
    last_boxed,
    maj_ks,
    majority_vote,
    pass_at_1,
    same_letter,
    score_samples,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{\\frac{1}{2}}$ and then \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\fbox{7}", "7"),
        ("first \\boxed{1} last \\fbox{2}", "2"),
        ("the answer is $\\boxed 5$.", "5"),
        ("unclosed \\boxed{12", None),
        ("no box here", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_extract_answer_prefers_the_last_box_then_the_last_answer_line():
    assert extract_answer("Answer: 3\n... \\boxed{4}\nAnswer: 5") == "4"
    assert extract_answer("answer: 3\nthinking\nFinal ANSWER :  12 apples\n") == "12 apples"
    assert extract_answer("I think it is 12.") is None
    assert extract_lenient("I think it is 1,200 or 12.") == "12"
    assert extract_lenient("nothing numeric") is None


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("blah\nAnswer: B", "B"),
        ("Answer: **D**", "D"),
        ("Answer: (C) because", "C"),
        ("so \\boxed{A}", "A"),
        ("\\boxed{\\text{C}}", "C"),
        ("Answer: a", "A"),
        ("Answer: none of them", None),
        ("I pick B", None),
    ],
)
def test_extract_choice(text, letter):
    assert extract_choice(text) == letter


@pytest.mark.parametrize(
    ("answer", "gold", "same"),
    [
        ("23", "023", True),
        ("\\textbf{(073)}", "073", True),
        ("104.", "104", True),
        ("24", "023", False),
        ("0.5", "\\frac{1}{2}", True),
        ("\\frac12", "1/2", True),
        ("\\left(3, \\frac{\\pi}{2}\\right)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("(3, \\pi)", "\\left( 3, \\frac{\\pi}{2} \\right)", False),
        ("\\text{Devon}", "\\text{Devon}", True),
        (None, "1", False),
    ],
)
def test_is_equivalent(answer, gold, same):
    assert is_equivalent(answer, gold) is same


def test_majority_vote_groups_equivalent_answers_and_breaks_ties_to_the_earliest():
    assert majority_vote(["1", "2", "2", "1"]) == "1"
    assert majority_vote(["3", "0.5", "\\frac{1}{2}"]) == "0.5"
    assert majority_vote([None, "7", None]) == "7"
    assert majority_vote([None, None]) is None
    assert majority_vote(["B", "A", "A"], same_letter) == "A"


def test_maj_ks():
    assert maj_ks(1) == [1]
    assert maj_ks(4) == [1, 2, 4]
    assert maj_ks(6) == [1, 2, 4, 6]
    assert maj_ks(64) == [1, 2, 4, 8, 16, 32, 64]


def test_pass_at_1_and_maj_at_k_on_hand_made_samples():
    responses = ["\\boxed{-1}", "\\boxed{7}", "so Answer: 7.0", "\\boxed{9}"]
    scores = score_samples(responses, "7")
    assert scores.answers == ("-1", "7", "7.0", "9")
    assert scores.correct == (False, True, True, False)
    assert scores.pass_at_1 == pass_at_1([False, True, True, False]) == 0.5
    # maj@2 is a 1-1 tie between -1 and 7: the earliest (-1) wins
    assert scores.maj == {1: False, 2: False, 4: True}
    assert scores.metrics() == {"pass@1": 0.5, "maj@1": 0.0, "maj@2": 0.0, "maj@4": 1.0}


def test_multiple_choice_scoring():
    scores = score_samples(["Answer: C", "Answer: B", "\\boxed{C}"], "C", extract_choice, same_letter)
    assert scores.correct == (True, False, True)
    assert scores.metrics() == {"pass@1": pytest.approx(2 / 3), "maj@1": 1.0, "maj@2": 1.0, "maj@3": 1.0}
