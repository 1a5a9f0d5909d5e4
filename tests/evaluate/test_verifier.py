"""The LLM verifier (grading=llm) against a real local OpenAI-compatible HTTP server: request format, verdict parsing,
retries on transient errors and malformed replies, the verdict cache, and grading real benchmark answers."""

import json
import logging
import re
import socket

import pytest
from lm_eval.tasks import TaskManager

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.benchmarks import task_config
from reasoning_sae.evaluate.grading import FIELD, Grading, score_choice, score_math
from reasoning_sae.evaluate.verifier import (RELEASED_MODEL, Verifier, VerifierConfig, parse_choice, parse_index,
                                             verifier_for)
from reasoning_sae.lm_eval import task_dir
from tests.helpers import FakeChatServer, chat_completion, last_message, shared_data

KEY_ENV = "REASONING_SAE_TEST_VERIFIER_KEY"


def settings(fake: FakeChatServer, **overrides) -> dict:
    """benchmark.verifier settings pointing at the fake server."""
    return {"base_url": fake.url, "api_key_env": KEY_ENV, "backoff": 0.0, **overrides}


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    monkeypatch.delenv("PROCESSOR", raising=False)
    server = FakeChatServer(lambda body: "1")  # a verifier saying: the attempt matches option 1
    yield server
    server.close()


def verifier(fake: FakeChatServer, **overrides) -> Verifier:
    return Verifier(VerifierConfig.from_mapping(settings(fake, **overrides)))


def attempt_and_options(prompt: str) -> tuple[str, str]:
    """The released MATH prompt's last Options / Attempt lines (the task; the examples come before)."""
    options = re.findall(r"^    Options: (.*)$", prompt, re.M)[-1]
    attempt = re.findall(r"^    Attempt: (.*)$", prompt, re.M)[-1]
    return options, attempt


def test_a_verdict_is_one_released_request_and_is_cached(fake):
    v = verifier(fake)
    assert v.equivalent("What is 1/2?", "\\frac{1}{2}", "0.5") is True
    assert v.equivalent("What is 1/2?", "\\frac{1}{2}", "0.5") is True  # cached: no second request
    assert len(fake.requests) == 1
    request = fake.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"
    body = request["body"]
    assert (body["model"], body["temperature"], body["max_tokens"]) == (RELEASED_MODEL, 0.5, 1024)
    assert len(body["messages"]) == 1 and body["messages"][0]["role"] == "user"
    assert attempt_and_options(body["messages"][0]["content"]) == ("['\\frac{1}{2}']", "0.5")
    fake.reply = lambda body: "-1"
    assert v.equivalent("What is 1/2?", "\\frac{1}{2}", "0.25") is False
    assert v.equivalent("Another question", "\\frac{1}{2}", "0.5") is False  # the cache is per question too
    assert len(fake.requests) == 3


def test_a_transient_500_then_success_is_retried(fake):
    fake.script = [(500, json.dumps({"error": {"message": "overloaded"}})), (503, "busy")]
    assert verifier(fake).equivalent("q", "3", "x=3") is True
    assert len(fake.requests) == 3


def test_persistent_server_errors_and_bad_keys_are_one_line_user_errors(fake):
    fake.script = [(500, "down")] * 3
    with pytest.raises(UserError, match=r"answered HTTP 500 \(down\): still failing after 2 retries"):
        verifier(fake, retries=2).equivalent("q", "3", "x=3")
    assert len(fake.requests) == 3
    fake.script = [(401, json.dumps({"error": {"message": "invalid key"}}))]
    with pytest.raises(UserError, match=f"HTTP 401 \\(invalid key\\): set a valid API key in \\${KEY_ENV}$"):
        verifier(fake).equivalent("q", "3", "x=4")
    assert len(fake.requests) == 4  # a 401 is not retried


def test_a_malformed_verdict_is_asked_again(fake):
    fake.script = [(200, chat_completion("These look the same to me.")), (200, chat_completion("**1**"))]
    assert verifier(fake).equivalent("q", "\\frac{1}{2}", "1/2") is True
    assert len(fake.requests) == 2


def test_unparseable_verdicts_and_server_errors_wait_backoff_times_two_to_the_attempt(fake, monkeypatch):
    waits = []
    monkeypatch.setattr("time.sleep", waits.append)
    fake.script = [(200, chat_completion(text)) for text in ("unsure", "still unsure", "1")]
    assert verifier(fake, retries=3, backoff=1.0).equivalent("q", "3", "x=3") is True
    assert waits == [1.0, 2.0] and len(fake.requests) == 3
    waits.clear()
    fake.reply = lambda body: "no idea"
    assert verifier(fake, retries=1, backoff=0.5).equivalent("q", "3", "x=4") is None
    assert waits == [0.5]
    waits.clear()
    fake.script = [(502, "bad gateway"), (200, chat_completion("-1"))]  # a transport retry inside one verdict attempt
    assert verifier(fake, retries=2, backoff=0.25).equivalent("q", "3", "x=5") is False
    assert waits == [0.25]


def test_no_parseable_verdict_keeps_the_answer_as_it_is(fake, caplog):
    fake.reply = lambda body: "Option 1 or option 2, hard to say."
    v = verifier(fake, retries=2)
    with caplog.at_level(logging.WARNING):
        assert v.equivalent("q", "\\frac{1}{2}", "1/2") is None
    assert len(fake.requests) == 3 and "no parseable verdict in 3 tries" in caplog.text
    doc = {"problem": "q", "answer": "\\frac{1}{2}", FIELD: Grading("llm", v.config).to_json()}
    assert score_math(doc, ["\\boxed{1/2}"]).pass_at_1 == 0.0  # unverified: exact strings, as released


def test_a_reply_that_is_not_chat_completions_json_is_a_user_error(fake):
    fake.script = [(200, "<html>login</html>")] * 2
    with pytest.raises(UserError, match=r"sent no Chat Completions message \(<html>login</html>\): point "
                                        r"benchmark.verifier.base_url at an OpenAI-compatible /v1 endpoint"):
        verifier(fake, retries=1).equivalent("q", "1", "one")
    assert len(fake.requests) == 2


def test_an_unreachable_endpoint_is_a_user_error(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = VerifierConfig(base_url=f"http://127.0.0.1:{port}/v1", api_key_env=None, retries=1, backoff=0.0)
    with pytest.raises(UserError, match="cannot reach the verifier at .*: check benchmark.verifier.base_url"):
        Verifier(config).equivalent("q", "1", "one")


@pytest.mark.parametrize("reply, index", [
    ("1", 1), ("-1", -1), (" **1** ", 1), ("1\n(the 1st option matches)", 1), ("The answer is -1.", -1),
    ("`2`", 2), ("", None), ("1 or 2", None), ("I cannot tell", None),
])
def test_parse_index(reply, index):
    assert parse_index(reply) == index


@pytest.mark.parametrize("reply, letter", [
    ("B", "B"), ("(C)", "C"), ("**D**", "D"), ("Answer: A", "A"), ("a", "A"), ("-1", ""),
    ("The student picked B.", "B"), ("A or B", None), ("none", None),
])
def test_parse_choice(reply, letter):
    assert parse_choice(reply) == letter


def test_settings_must_be_complete_before_anything_runs(monkeypatch):
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    with pytest.raises(UserError, match=r"^benchmark.grading=llm needs an API key: set \$OPENROUTER_API_KEY, or "
                                        r"benchmark.verifier.api_key_env=null"):
        Grading.from_settings("llm", {})
    with pytest.raises(UserError, match="set benchmark.verifier.base_url to an OpenAI-compatible /v1 URL"):
        Grading.from_settings("llm", {"base_url": None, "api_key_env": None})
    with pytest.raises(UserError, match=r"unknown benchmark.verifier setting\(s\) \['key'\]"):
        Grading.from_settings("llm", {"key": "sk-..."})
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-secret")
    monkeypatch.setenv("PROCESSOR", "my/verifier")
    grading = Grading.from_settings("llm", {})
    assert grading.verifier.resolved_model == "my/verifier"  # the released code's variable
    assert "sk-secret" not in grading.to_json() and "sk-secret" not in json.dumps(grading.key())
    assert grading.key() == {"mode": "llm", "verifier": {
        "base_url": "https://openrouter.ai/api/v1", "model": "my/verifier", "temperature": 0.5, "max_tokens": 1024}}
    assert Grading.from_settings("llm", {"api_key_env": None}).verifier.api_key_env is None  # a keyless local server


def judge_math(body: dict) -> str:
    """A cooperative verifier: equivalent when the attempt's value equals the only option's."""
    options, attempt = attempt_and_options(last_message(body))
    value = lambda s: eval(re.sub(r"\\d?frac\{(\d+)\}\{(\d+)\}", r"(\1/\2)", s).strip("[]'"))  # noqa: E731
    try:
        return "1" if abs(value(options) - value(attempt)) < 1e-9 else "-1"
    except Exception:
        return "-1"


def test_llm_grading_reaches_the_math500_task_on_real_answers(fake):
    fake.reply = judge_math
    path = shared_data("math500/test.jsonl")
    manager = TaskManager(include_path=str(task_dir()), include_defaults=False)
    config = task_config("math500", local_path=path, grading="llm", verifier=settings(fake))
    assert config["dataset_kwargs"]["verifier"]["api_key_env"] == KEY_ENV
    task = manager.load([config])["tasks"]["math500"]
    docs = [d for d in task.eval_docs if re.fullmatch(r"\\frac\{\d+\}\{(2|4|5|8)\}", d["answer"])][:4]
    assert len(docs) == 4 and "sk-test-123" not in docs[0][FIELD]
    for doc in docs:
        value = eval(re.sub(r"\\frac\{(\d+)\}\{(\d+)\}", r"\1/\2", doc["answer"]))
        scores = score_math(doc, [f"\\boxed{{{value}}}", f"\\boxed{{{value + 1}}}", f"\\boxed{{{doc['answer']}}}"])
        assert scores.correct == (True, False, True)
        assert task.process_results(doc, [f"\\boxed{{{value}}}"])["pass@1"] == 1.0
    # per doc: decimal and decimal+1 against the gold, then maj@k's grouping asks decimal+1 and the gold string against
    # the decimal; the gold string against itself needs no request, and the later process_results hit the cache
    assert len(fake.requests) == 4 * 4


def test_integer_answers_need_no_verifier(fake):
    path = shared_data("aime24/test.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    grading = Grading.from_settings("llm", settings(fake)).to_json()
    for row in rows:
        doc = {**row, FIELD: grading}
        assert score_math(doc, [f"\\boxed{{{int(row['answer'])}}}", "\\boxed{1000}"]).correct == (True, False)
    assert fake.requests == []


def test_llm_reads_the_gpqa_letter_when_the_answer_is_not_one(fake):
    path = shared_data("gpqa_diamond/gpqa_diamond.csv")
    manager = TaskManager(include_path=str(task_dir()), include_defaults=False)
    config = task_config("gpqa_diamond_openai", local_path=path, grading="llm", verifier=settings(fake))
    docs = list(manager.load([config])["tasks"]["gpqa_diamond_openai"].eval_docs)[:3]
    fake.reply = lambda body: next(d["answer"] for d in docs if d["Question"] in last_message(body))
    for doc in docs:
        correct = doc["choice" + str("ABCD".index(doc["answer"]) + 1)]
        assert score_choice(doc, [f"Answer: {doc['answer']}"]).pass_at_1 == 1.0  # a letter: no request
        assert score_choice(doc, [f"... so the answer is: {correct}"]).pass_at_1 == 1.0
    assert len(fake.requests) == 3
    prompt = fake.requests[0]["body"]["messages"][0]["content"]
    assert f"Question: {docs[0]['Question']}\nAnswer Choices:\n(A) {docs[0]['choice1']}\n" in prompt
    first = docs[0][f"choice{'ABCD'.index(docs[0]['answer']) + 1}"]
    assert prompt.endswith(f"Attempt: ... so the answer is: {first}")
    fake.reply = lambda body: "-1"
    assert score_choice(docs[1], ["I would not pick any of these."]).answers == ("None",)


def test_one_verifier_per_setting_for_the_process(fake):
    config = VerifierConfig.from_mapping(settings(fake))
    assert verifier_for(config) is verifier_for(VerifierConfig.from_mapping(settings(fake)))
    assert verifier_for(config) is not verifier_for(VerifierConfig.from_mapping(settings(fake, temperature=0.0)))
