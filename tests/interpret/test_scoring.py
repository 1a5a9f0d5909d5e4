"""Scored explanations (delphi's detection and fuzzing) against a local chat server with deterministic answers."""

import json
import math
import random
import re

import pandas as pd
import pytest

from reasoning_sae import UserError
from reasoning_sae.interpret.autointerp import Explainer, FeatureGroup, render_chat
from reasoning_sae.interpret.scoring import (ALL, Context, classification_score, detection_samples, fuzzing_samples,
                                             group_frame, held_out_contexts, highlight, parse_labels, requests,
                                             score_feature, scores_frame, scores_markdown)
from tests.helpers import FakeChatServer, FakeExplainer, last_message


def _active(i: int, band: int = 1) -> Context:
    """`Okay, wait ...`: the feature fires on ` wait` (and weakly on `,`, under fuzzing's 0.3 threshold)."""
    return Context(("Okay", ",", " wait", f" {i}", "\n", " check"), (0.0, 0.2, 2.0 + i, 0.0, 0.0, 0.0), 2, band)


def _silent(i: int) -> Context:
    return Context(("The", " sum", " is", f" {i}", " apples", "."), (0.0,) * 6, 3, None)


CONTEXTS = [_active(i, band=i % 3) for i in range(6)] + [_silent(i) for i in range(6)]


def oracle(body: dict) -> str:
    """Knows the feature: detection says 1 for ` wait`; fuzzing says 1 when every highlight is exactly ` wait`."""
    texts = re.findall(r"^Example \d+: (.*)$", last_message(body), re.M)
    if "<<" not in last_message(body):
        return json.dumps([int("wait" in t) for t in texts])
    return json.dumps([int(all(span == " wait" for span in re.findall(r"<<(.*?)>>", t))) for t in texts])


@pytest.fixture
def server():
    fake = FakeChatServer(oracle)
    yield fake
    fake.close()


def _explainer(server, **kw) -> Explainer:
    return Explainer(base_url=server.url, model="judge-1", backoff=0.0, **kw)


def test_detection_shows_plain_contexts_on_one_line():
    samples = detection_samples(CONTEXTS)
    assert samples[0].text == "Okay, wait 0\\n check" and samples[0].truth and samples[0].band == 0
    assert samples[-1].text == "The sum is 5 apples." and not samples[-1].truth and samples[-1].band is None


def test_fuzzing_highlights_firing_tokens_and_as_many_wrong_ones_with_the_centre():
    samples = fuzzing_samples(CONTEXTS, random.Random(0))
    assert samples[0].text == "Okay,<< wait>> 0\\n check" and samples[0].truth  # ',' is under 0.3 of the maximum
    run = Context(("a", "b", "c", "d"), (0.0, 1.0, 0.9, 0.0), 1, 3)
    assert highlight(run.pieces, {1, 2}) == "a<<bc>>d"  # a run of marked pieces is one span
    # 2 firing pieces per activating context on average (`,` and ` wait`): 2 wrong ones, the centre always
    for s, c in zip(samples[6:], CONTEXTS[6:], strict=True):
        spans = re.findall(r"<<(.*?)>>", s.text)
        assert not s.truth and len(spans) in (1, 2) and any(c.pieces[c.center] in span for span in spans)
        assert sum(piece in "".join(spans) for piece in c.pieces) == 2  # the pieces differ: each found once
        assert re.sub(r"<<|>>", "", s.text) == "".join(c.pieces)
    assert fuzzing_samples(CONTEXTS, random.Random(0)) == samples  # seeded
    assert {s.text for s in fuzzing_samples(CONTEXTS, random.Random(1))} != {s.text for s in samples}


def test_requests_are_a_seeded_shuffle_in_batches():
    samples = detection_samples(CONTEXTS)
    batches = requests(samples, 5, random.Random(3))
    assert [len(b) for b in batches] == [5, 5, 2]
    assert sorted(s.text for b in batches for s in b) == sorted(s.text for s in samples)
    assert requests(samples, 5, random.Random(3)) == batches
    assert [s.truth for s in batches[0]] != [s.truth for s in samples[:5]]  # mixed, not in the given order


def test_parse_labels_reads_the_last_list_of_the_right_length():
    assert parse_labels("[1,0,1]", 3) == [True, False, True]
    assert parse_labels("Example 2 has [x]. Answer: [1, 0, 'true']", 3) == [True, False, True]
    assert parse_labels("```python\n[True, False]\n```", 2) == [True, False]
    assert parse_labels("[1,0] then [0,0,1]", 2) == [True, False]
    assert parse_labels("[1,0,2]", 3) is None and parse_labels("yes, no", 2) is None and parse_labels("[1]", 2) is None


def test_balanced_accuracy_and_f1_by_hand():
    truth = [True, True, True, True, False, False]
    s = classification_score(7, "detection", truth, [True, True, True, False, True, False])
    assert (s.n, s.positives, s.negatives) == (6, 4, 2)
    assert s.balanced_accuracy == pytest.approx((3 / 4 + 1 / 2) / 2) and s.precision == pytest.approx(3 / 4)
    assert s.recall == pytest.approx(3 / 4) and s.f1 == pytest.approx(3 / 4)
    always = classification_score(7, "detection", truth, [True] * 6)
    assert always.balanced_accuracy == 0.5 and always.f1 == pytest.approx(2 * (4 / 6) / (4 / 6 + 1))
    never = classification_score(7, "detection", truth, [False] * 6)
    assert never.balanced_accuracy == 0.5 and never.f1 == 0.0 and never.precision == 0.0


@pytest.mark.parametrize("method", ["detection", "fuzzing"])
def test_an_explainer_that_knows_the_feature_scores_1_and_a_contrarian_0(server, method):
    score, judgements = score_feature(_explainer(server), 7, "the word wait", CONTEXTS, method, 5, seed=0)
    assert score.balanced_accuracy == 1.0 and score.f1 == 1.0 and (score.n, score.positives) == (12, 6)
    assert len(server.requests) == 3 and [len(re.findall(r"^Example", last_message(r["body"]), re.M))
                                          for r in server.requests] == [5, 5, 2]
    assert [(j.request, j.example) for j in judgements][:6] == [(0, i) for i in range(5)] + [(1, 0)]
    body = server.requests[0]["body"]
    assert body["model"] == "judge-1" and [m["role"] for m in body["messages"]] == [
        "system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert last_message(body).startswith("Latent explanation: the word wait\n\nText examples:\n\nExample 0: ")
    server.reply = lambda body: json.dumps([1 - x for x in json.loads(oracle(body))])
    flipped, _ = score_feature(_explainer(server), 7, "the word wait", CONTEXTS, method, 5, seed=0)
    assert flipped.balanced_accuracy == 0.0


def test_the_prompts_are_delphis():
    detection = render_chat("detection.j2", explanation="E", examples=["a", "b"])
    fuzzing = render_chat("fuzzing.j2", explanation="E", examples=["<<a>>"])
    assert detection[0]["content"].startswith("You are an intelligent and meticulous linguistics researcher.")
    assert "Python list" in detection[0]["content"] and "between tokens << and >>" in fuzzing[0]["content"]
    assert [m["content"] for m in detection[2::2]] == ["[1,0,0,0,1]", "[0,0,0,0,0]", "[1,1,1,1,1]"]
    assert [m["content"] for m in fuzzing[2::2]] == ["[1,0,0,1,1]", "[0,0,0,0,0]", "[1,1,1,1,1]"]
    assert "Patriots<< tight end>> Rob Gronkowski" in fuzzing[1]["content"]
    assert detection[-1]["content"] == "Latent explanation: E\n\nText examples:\n\nExample 0: a\nExample 1: b"


def test_an_unreadable_answer_is_asked_again_then_one_line(server):
    server.script.append((200, json.dumps({"choices": [{"message": {"content": "I think 1, 0, 1, 1, 0"}}]})))
    score, _ = score_feature(_explainer(server, retries=1), 7, "wait", CONTEXTS[:3] + CONTEXTS[6:8], "detection", 5,
                             seed=0)
    assert len(server.requests) == 2 and score.balanced_accuracy == 1.0  # the second answer was a list
    server.requests.clear()
    server.reply = lambda body: "Sure!\nThe first one, maybe."
    with pytest.raises(UserError) as err:
        score_feature(_explainer(server, retries=2), 7, "wait", CONTEXTS, "fuzzing", 5, seed=0)
    assert len(server.requests) == 3 and "\n" not in str(err.value)
    assert str(err.value).startswith("the explainer's fuzzing answer for feature 7 (request 1) is not a list of 5 "
                                     "labels 0 or 1 (Sure! The first one, maybe.): rerun, or use a stronger")


def test_answers_are_cached_so_a_rerun_after_a_failure_sends_only_the_rest(server, tmp_path):
    answered = []

    def fails_after_four(body: dict) -> str:
        answered.append(body)
        if len(answered) == 4:  # the server goes down after its fourth answer
            server.script += [(503, '{"error": {"message": "down"}}')] * 10
        return oracle(body)

    server.reply = fails_after_four
    explainer = _explainer(server, retries=0).with_cache(tmp_path / "cache")
    contexts = CONTEXTS * 2  # 24 examples: 5 requests per method

    def run() -> list:
        return [score_feature(explainer, 7, "wait", contexts, m, 5, seed=0) for m in ("detection", "fuzzing")]

    with pytest.raises(UserError, match=r"answered HTTP 503 \(down\)"):
        run()
    assert len(answered) == 4 and len(list((tmp_path / "cache").glob("*.json"))) == 4
    server.script.clear()
    server.requests.clear()
    server.reply = oracle
    first = run()
    assert len(server.requests) == 10 - 4  # only the requests never answered
    server.requests.clear()
    assert run() == first and server.requests == []  # everything from the cache now
    entry = json.loads(next((tmp_path / "cache").glob("*.json")).read_text())
    assert set(entry) == {"request", "reply"} and entry["request"]["model"] == "judge-1"
    fresh = _explainer(server, retries=0)  # without a cache, the same answers from the server
    assert [score_feature(fresh, 7, "wait", contexts, m, 5, seed=0) for m in ("detection", "fuzzing")] == first


def test_held_out_contexts_take_bands_in_turn_and_name_the_fix():
    def ctx(band=None):
        c = {"tokens": ["a", " b"], "acts": [0.0, 1.0] if band is not None else [0.0, 0.0], "center": 1}
        return {**c, "band": band} if band is not None else c

    held = {"7": {"activating": [ctx(3), ctx(3), ctx(3), ctx(2), ctx(0)], "non_activating": [ctx()] * 5}}
    picked = held_out_contexts(held, [7], 3)[7]
    assert [c.band for c in picked] == [3, 2, 0, None, None, None]
    assert picked[0] == Context(("a", " b"), (0.0, 1.0), 1, 3)
    with pytest.raises(UserError, match=r"^feature 8 has no held-out contexts in held_out.json: add it to "
                                        r"interpret.extra_features and rerun the interpret stage, or set "
                                        r"autointerp.scoring.enabled=false$"):
        held_out_contexts(held, [7, 8], 3)
    with pytest.raises(UserError, match="feature 7 never fires on the interpret stage's corpus"):
        held_out_contexts({"7": {"activating": [], "non_activating": [ctx()]}}, [7], 3)
    with pytest.raises(UserError, match="feature 7 fires in every context window .* narrow interpret.context"):
        held_out_contexts({"7": {"activating": [ctx(1)], "non_activating": []}}, [7], 3)


def test_tables_per_feature_and_per_group():
    scores = [classification_score(f, m, [True, False], [True, p]) for f, p in ((3, False), (5, True))
              for m in ("detection", "fuzzing")]
    frame = scores_frame(scores, [5, 3])
    assert frame["feature"].tolist() == [5, 3]
    assert frame["detection_balanced_accuracy"].tolist() == [0.5, 1.0] and frame["fuzzing_n"].tolist() == [2, 2]
    only = scores_frame([s for s in scores if s.method == "detection"], [5, 3], ["detection"])
    assert only["fuzzing_balanced_accuracy"].isna().all() and only["fuzzing_n"].tolist() == [0, 0]
    groups = group_frame(frame, [FeatureGroup("Checks | fixes", (3, 5)), FeatureGroup("Other", (5,))])
    assert groups["group"].tolist() == ["Checks | fixes", "Other", ALL]
    assert groups["detection_balanced_accuracy"].tolist() == [0.75, 0.5, 0.75] and groups["n_features"].tolist() == [
        2, 1, 2]
    table = scores_markdown(frame, groups, {5: "fires on\nwait", 3: "x"}).splitlines()
    assert table[0] == ("| Feature | Description | Detection bal. acc. % | Detection F1 % | Fuzzing bal. acc. % "
                        "| Fuzzing F1 % | n (detection / fuzzing) |")
    assert table[2] == "| 5 | fires on wait | 50.0 | 66.7 | 50.0 | 66.7 | 2 / 2 |"
    assert "| Checks \\| fixes | 3, 5 | 2 | 75.0 |" in "\n".join(table)
    assert math.isnan(group_frame(only, [])["fuzzing_balanced_accuracy"].iloc[0])
    assert isinstance(frame, pd.DataFrame)


def test_the_fake_explainer_answers_scoring_requests():
    server = FakeExplainer()
    try:
        score, _ = score_feature(_explainer(server), 7, "wait", CONTEXTS, "fuzzing", 5, seed=0)
        assert score.balanced_accuracy == 0.5  # every example shows a highlight: all labelled 1
    finally:
        server.close()
