"""Budget forcing's rule (evaluate/budget.py) on a scripted fake model and a one-character-per-token tokenizer."""

import pytest

from reasoning_sae import UserError
from reasoning_sae.evaluate.budget import SETTINGS, BudgetForcing, Forcer, budget_forcing, force_rounds

EOS = 0


class CharTokenizer:
    """One token per character (id = code point); id 0 is the end of sequence."""

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join("" if i == EOS and skip_special_tokens else "<eos>" if i == EOS else chr(i) for i in ids)


TOK = CharTokenizer()


def ids(text: str, eos: bool = False) -> list[int]:
    return TOK.encode(text) + ([EOS] if eos else [])


def forcer(minimum=10, word="W", max_forces=2, think_end="</t>") -> Forcer:
    return Forcer(BudgetForcing(minimum, word, max_forces), TOK, think_end, [EOS])


@pytest.mark.parametrize("output, eos, kept", [
    ("abc</t>answer", True, "abc"),        # think_end: the thinking before it
    ("abc", True, "abc"),                  # the end of sequence while thinking
    ("abc</t>ans", False, "abc"),          # think_end, then out of tokens: it tried all the same
    ("abc", False, None),                  # out of tokens while thinking: never tried
    ("abSTOPc</t>", True, "ab"),           # a stop string of the task while thinking: an attempt too (s1's)
    ("abc</t>aSTOP", True, "abc"),         # a stop string after think_end does not matter
])
def test_thinking_is_what_came_before_the_first_attempt_to_stop(output, eos, kept):
    got = forcer().thinking(ids(output, eos) + [EOS] * eos, stops=["STOP"])  # padding after the EOS is ignored
    assert got == (None if kept is None else ids(kept))


def test_a_token_straddling_think_end_keeps_its_text_before_it():
    class Pairs(CharTokenizer):  # "x<" is one token (id 1000)
        def decode(self, ids, skip_special_tokens=False):
            return "".join("x<" if i == 1000 else super(Pairs, self).decode([i]) for i in ids)

    rule = Forcer(BudgetForcing(10), Pairs(), "</t>", [EOS])
    assert rule.thinking([ord("a"), 1000, *ids("/t>b")], stops=()) == ids("ax")


def test_retry_cuts_the_attempt_appends_the_word_and_respects_minimum_forces_and_budget():
    rule = forcer(minimum=5, max_forces=2)
    assert rule.retry(ids("abc</t>x"), forces=0, budget=20) == ids("abcW")
    assert rule.retry(ids("abc", eos=True), forces=1, budget=20) == ids("abcW")
    assert rule.retry(ids("abcde</t>x"), forces=0, budget=20) is None   # thought min_tokens already
    assert rule.retry(ids("abc", eos=True), forces=2, budget=20) is None  # forced max_forces times
    assert rule.retry(ids("abc", eos=True), forces=0, budget=4) is None   # no room left after the word
    assert rule.retry(ids("abc", eos=True), forces=0, budget=5) == ids("abcW")


def test_without_a_think_end_only_the_end_of_sequence_is_an_attempt():
    rule = forcer(minimum=20, think_end=None)
    assert rule.retry(ids("ab</t>cd", eos=True), forces=0, budget=30) == ids("ab</t>cdW")


def scripted(continuations: dict[str, list[str]]):
    """A fake engine: for a prefix (decoded), the next of its scripted continuations; records every call."""
    calls = []

    def generate(rows, prefixes):
        calls.append(rows)
        return [ids(continuations[TOK.decode(p)].pop(0), eos=True) for p in prefixes]

    return generate, calls


def test_force_rounds_regenerate_only_the_rows_that_stop_early():
    rule = forcer(minimum=6, max_forces=2)
    first = [ids("ab", eos=True), ids("abcdefgh", eos=True), ids("a</t>1", eos=True), ids("abcdefg</t>2")]
    generate, calls = scripted({"abW": ["c", "ignored"], "abWcW": ["dddddddd</t>3"], "aW": ["bcdefg</t>4"]})
    outputs, forces = force_rounds(first, [30] * 4, rule, generate, [["STOP"]] * 4)
    assert [TOK.decode(o) for o in outputs] == [
        "abWcWdddddddd</t>3<eos>",  # forced twice: "ab" and "abWc" both short of 6 tokens
        "abcdefgh<eos>",            # long enough: left as generated
        "aWbcdefg</t>4<eos>",       # forced once at think_end, then thought long enough
        "abcdefg</t>2"]             # out of tokens after thinking long enough: untouched
    assert forces == [2, 0, 1, 0]
    assert calls == [[0, 2], [0]]


def test_force_rounds_cut_every_sample_to_its_budget():
    generate, _ = scripted({"abW": ["cdefghijkl"]})
    outputs, forces = force_rounds([ids("ab", eos=True)], [6], forcer(minimum=5), generate, [[]])
    assert (TOK.decode(outputs[0]), forces) == ("abWcde", [1])


@pytest.mark.parametrize("args, message", [
    ((0,), "min_thinking_tokens=0: give a whole number >= 1"),
    ((True,), "min_thinking_tokens=True"),
    ((5, "W", 0), "max_forces=0: give a whole number >= 1"),
    ((5, " "), "force_word=' ': give the text to append"),
    ((128, "W", 1, 128), "min_thinking_tokens=128 is not below max_gen_toks=128: .*lower min_thinking_tokens or "
                         "raise max_gen_toks"),
])
def test_bad_settings_are_one_line_naming_the_fix(args, message):
    with pytest.raises(UserError, match=message):
        budget_forcing(*args)


def test_settings_errors_name_the_config_keys():
    with pytest.raises(UserError, match=r"^benchmark.budget_forcing.min_thinking_tokens=200 is not below "
                                        r"benchmark.max_gen_toks=128"):
        budget_forcing(200, "Wait", 1, 128, names=SETTINGS)
    assert budget_forcing(96, "Wait", 2, 128, names=SETTINGS) == BudgetForcing(96, "Wait", 2)


def test_a_word_without_tokens_is_refused():
    class Empty(CharTokenizer):
        def encode(self, text, add_special_tokens=False):
            return []

    with pytest.raises(UserError, match="has no tokens"):
        Forcer(BudgetForcing(5), Empty(), None, [EOS])


@pytest.mark.parametrize("overrides, expected", [
    ((), BudgetForcing(96, "Wait", 2)),                         # the demo: triggers on about half its samples
    (("experiment=paper",), BudgetForcing(8192, "Wait", 2)),   # every benchmark of the paper run
    (("benchmark.budget_forcing.enabled=false",), None),
])
def test_the_demo_and_the_paper_force_a_minimum_below_their_budget(compose, overrides, expected):
    from reasoning_sae.evaluate.budget import budget_setting

    cfg = compose("evaluate", overrides)
    assert budget_setting(cfg.benchmark) == expected
    assert expected is None or expected.min_tokens < cfg.benchmark.max_gen_toks
