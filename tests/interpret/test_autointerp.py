"""Automatic interpretation: prompt sampling, steered generations, the explainer client against a real local server."""

import json
import re
import socket
from collections import Counter

import pytest
import torch

from reasoning_sae import UserError, load_lm
from reasoning_sae.data.demo import DOMAINS, reasoning_rows
from reasoning_sae.data.formats import openthoughts_user_prompt
from reasoning_sae.interpret.autointerp import (
    UNGROUPED, Explainer, FeatureDescription, FeatureGroup, Generation, Prompt, describe_feature, group_features,
    markdown_table, parse_groups, parse_json_reply, render_messages, sample_prompts, steered_generations)
from reasoning_sae.sae import SAEConfig, SparseAutoencoder
from tests.helpers import FakeExplainer


@pytest.fixture
def server():
    fake = FakeExplainer()
    yield fake
    fake.close()


def _generations(feature: int = 7) -> list[Generation]:
    prompts = [Prompt("math", "What is 2+2?"), Prompt("code", "Write f(x).")]
    return [Generation(feature, g, p.domain, p.text, f"{p.domain} answer at gamma {g:g}")
            for g in (-4.0, 0.0, 4.0) for p in prompts]


def _explainer(server, **kw) -> Explainer:
    return Explainer(base_url=server.url, model="judge-1", api_key="sk-test", backoff=0.0, **kw)


def test_sample_prompts_is_stratified_and_deterministic():
    rows = reasoning_rows(60, seed=0)
    prompts = sample_prompts(rows, 6, seed=3)
    assert sorted(p.domain for p in prompts) == sorted(DOMAINS)
    assert prompts == sample_prompts(rows, 6, seed=3) and prompts != sample_prompts(rows, 6, seed=4)
    counts = Counter(p.domain for p in sample_prompts(rows, 15, seed=3)).values()
    assert max(counts) - min(counts) <= 1 and sum(counts) == 15
    by_text = {openthoughts_user_prompt(r): r["domain"] for r in rows}
    assert all(by_text[p.text] == p.domain for p in prompts)  # the scoring corpus's user turn
    assert len(sample_prompts(rows[:4], 30, seed=0)) == 4
    with pytest.raises(UserError, match="openthoughts-format source"):
        sample_prompts([{"text": "hi"}], 1, seed=0)


def test_steered_generations_cover_the_grid_with_an_unsteered_reference(tiny_llama_dir):
    lm = load_lm(str(tiny_llama_dir), device="cpu")
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=8, metadata={"hook_name": "blocks.2.hook_resid_post"}))
    with torch.no_grad():
        sae.W_dec.normal_(generator=torch.Generator().manual_seed(0))
    prompts = [Prompt("math", "What is 2+2?"), Prompt("code", "Write f(x).")]
    rows = steered_generations(lm, sae, 3, [-4, 4], prompts, f_max=50.0, max_new_tokens=6)
    assert [(r.gamma, r.domain) for r in rows] == [(g, d) for g in (-4.0, 0.0, 4.0) for d in ("math", "code")]
    assert all(r.feature == 3 for r in rows)
    reference = lm.generate([p.text for p in prompts], max_new_tokens=6)
    assert [r.text for r in rows if r.gamma == 0] == reference
    assert [r.text for r in rows if r.gamma == 4] != reference  # a strong push changes a random model's text
    reused = steered_generations(lm, sae, 3, [0, 4], prompts, 50.0, 6, reference=["a", "b"])
    assert [r.text for r in reused if r.gamma == 0] == ["a", "b"]


def test_describe_feature_posts_the_rendered_templates(server):
    generations = _generations()
    description = describe_feature(_explainer(server, temperature=0.3), 7, generations, mode="add")
    assert description == FeatureDescription(
        7, "feature 7 makes the model verify its steps", "verification", "Semantic & Logical Consistency",
        "wait, let me check", "direct answers", ("wait",))
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "judge-1" and body["temperature"] == 0.3 and "max_tokens" not in body
    system, user = body["messages"]
    assert system["role"] == "system" and "steering" in system["content"] and '"strengthening"' in system["content"]
    assert user["role"] == "user"
    assert user["content"].startswith('Feature 7, steering mode "add", strengths gamma = -4, 0, 4')
    assert all(g.text in user["content"] and g.prompt in user["content"] for g in generations)
    assert "### gamma = -4 (weakened)" in user["content"] and "### gamma = 0 (unsteered)" in user["content"]
    assert body["messages"] == render_messages("describe.j2", feature=7, mode="add", gammas=[-4.0, 0.0, 4.0],
                                               examples=[{"domain": d, "prompt": p, "outputs": [
                                                   (g, f"{d} answer at gamma {g:g}") for g in (-4.0, 0.0, 4.0)]}
                                                   for d, p in (("math", "What is 2+2?"), ("code", "Write f(x)."))])


def test_group_features_validates_ids_and_keeps_every_feature(server):
    descriptions = [FeatureDescription(f, f"does {f}") for f in (11, 4, 9)]
    groups = group_features(_explainer(server), descriptions)
    assert [g.name for g in groups] == ["Self-Correction and Backtracking", "Other Behavior"]
    assert groups[0].features == (11,) and groups[1].features == (4, 9)  # "#4" strings are ids too
    assert groups[1].effect_type == "Stylistic; Structural"
    user = server.requests[0]["body"]["messages"][1]["content"]
    assert user.startswith("3 features:") and "Feature 4: does 4" in user
    left_out = parse_groups({"groups": [{"name": "A", "features": [4]}]}, [11, 4, 9])
    assert left_out[-1] == FeatureGroup(UNGROUPED, (11, 9))
    with pytest.raises(UserError, match=r"grouped feature ids \[12\] that it was not given"):
        parse_groups({"groups": [{"name": "A", "features": [4, 12]}]}, [11, 4, 9])
    with pytest.raises(UserError, match="not a feature id"):
        parse_groups({"groups": [{"name": "A", "features": ["several"]}]}, [4])
    wrong = (200, server.completion({"model": "m", "messages": [{"content": "Feature 99: x"}]}))
    server.script.append(wrong)
    with pytest.raises(UserError, match=r"\[99\]"):
        group_features(_explainer(server, retries=0), descriptions)
    server.script.append(wrong)
    server.requests.clear()
    assert group_features(_explainer(server, retries=1), descriptions) == groups  # asked again: a valid grouping
    assert len(server.requests) == 2


def test_parse_json_reply_strips_fences_and_prose():
    assert parse_json_reply('```json\n{"a": 1}\n```', "x") == {"a": 1}
    assert parse_json_reply('Sure! {"a": {"b": 2}} Hope this helps.', "x") == {"a": {"b": 2}}
    with pytest.raises(UserError, match="reply for feature 3 is not the JSON object"):
        parse_json_reply("I cannot help with that.", "feature 3")


def test_server_errors_are_retried_then_reported_in_one_line(server):
    described = server.completion({"model": "m", "messages": [{"content": "Feature 7, x"}]})
    server.script += [(500, "boom"), (200, described)]
    assert describe_feature(_explainer(server, retries=1), 7, _generations()).function == "verification"
    server.requests.clear()
    server.script += [(500, '{"error": {"message": "overloaded\\nplease retry"}}')] * 2
    with pytest.raises(UserError) as err:
        _explainer(server, retries=1).chat([{"role": "user", "content": "hi"}])
    message = str(err.value)
    assert len(server.requests) == 2 and "\n" not in message
    assert "answered HTTP 500 (overloaded please retry)" in message and "after 1 retries" in message
    server.script.append((401, '{"error": {"message": "bad key"}}'))
    with pytest.raises(UserError, match=r"HTTP 401 \(bad key\): set a valid API key in \$OPENAI_API_KEY"):
        _explainer(server, retries=0).chat([])


def test_retries_wait_backoff_times_two_to_the_attempt(server, monkeypatch):
    def _explainer(server, **kw):
        return Explainer(base_url=server.url, model="judge-1", api_key="sk-test", **kw)

    waits = []
    monkeypatch.setattr("time.sleep", waits.append)
    server.script += [(503, "busy"), (429, "slow down")]
    reply = _explainer(server, retries=3, backoff=0.5).chat([{"role": "user", "content": "Feature 7, x"}])
    assert reply.startswith("Here you go")
    assert waits == [0.5, 1.0] and len(server.requests) == 3
    waits.clear()
    server.script += [(500, "boom")] * 3
    with pytest.raises(UserError, match=r"answered HTTP 500 \(boom\): server error after 2 retries"):
        _explainer(server, retries=2, backoff=0.25).chat([])
    assert waits == [0.25, 0.5]
    waits.clear()
    server.script.append((400, "bad request"))  # not a retry status: answered at once
    with pytest.raises(UserError, match="HTTP 400"):
        _explainer(server, retries=2, backoff=0.25).chat([])
    assert waits == []


def test_malformed_replies_are_one_line_user_errors(server):
    explainer = _explainer(server, retries=0)
    server.script.append((200, "<html>not json</html>"))
    with pytest.raises(UserError, match="sent no Chat Completions message.*OpenAI-compatible /v1"):
        explainer.chat([])
    server.script.append((200, json.dumps({"choices": []})))
    with pytest.raises(UserError, match="sent no Chat Completions message"):
        explainer.chat([])
    server.script.append((200, json.dumps({"choices": [{"message": {"content": "No.\nSorry."}}]})))
    with pytest.raises(UserError) as err:
        describe_feature(explainer, 7, _generations())
    assert "not the JSON object asked for (No. Sorry.)" in str(err.value) and "\n" not in str(err.value)
    server.script.append((200, server.completion({"model": "m", "messages": [{"content": "Feature 1: x"}]})))
    with pytest.raises(UserError, match="reply for feature 7 has no description"):
        describe_feature(explainer, 7, _generations())
    wrong_path = Explainer(base_url=server.url.removesuffix("/v1"), retries=0)
    with pytest.raises(UserError, match=r"HTTP 404 \(no route /chat/completions\): check explainer.base_url"):
        wrong_path.chat([])


def test_explainer_config_falls_back_to_the_environment(monkeypatch, server):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "REASONING_SAE_EXPLAINER_MODEL", "MY_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UserError, match=r"no explainer endpoint: set autointerp.explainer.base_url=\.\.\. or "
                                        r"\$OPENAI_BASE_URL") as err:
        Explainer.from_config({"base_url": None, "model": None})
    assert "\n" not in str(err.value)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("REASONING_SAE_EXPLAINER_MODEL", "env-model")
    monkeypatch.setenv("MY_KEY", "sk-env")
    explainer = Explainer.from_config({"api_key_env": "MY_KEY", "timeout": 5, "retries": 0})
    assert (explainer.base_url, explainer.model, explainer.api_key, explainer.timeout) == (server.url, "env-model",
                                                                                             "sk-env", 5.0)
    assert "sk-env" not in repr(explainer)
    explainer.chat([{"role": "user", "content": "Feature 1, hi"}])
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer sk-env"
    assert Explainer.from_config({"base_url": "http://x/v1", "model": "cfg-model"}).model == "cfg-model"
    monkeypatch.delenv("REASONING_SAE_EXPLAINER_MODEL")
    assert Explainer.from_config({}).model == "gpt-4o"


def test_unreachable_endpoint_is_a_user_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again on exit: nothing listens there
    explainer = Explainer(base_url=f"http://127.0.0.1:{port}/v1", retries=1, backoff=0.0, timeout=2)
    with pytest.raises(UserError, match=rf"cannot reach the explainer at http://127.0.0.1:{port}/v1/chat/completions"):
        explainer.chat([])


def test_accepted_answers_are_cached_and_a_cached_one_is_not_asked_again(server, tmp_path):
    explainer = _explainer(server).with_cache(tmp_path / "cache")
    first = describe_feature(explainer, 7, _generations())
    group_features(explainer, [first])
    assert len(server.requests) == 2 and len(list((tmp_path / "cache").glob("*.json"))) == 2
    assert describe_feature(explainer, 7, _generations()) == first and len(server.requests) == 2
    assert describe_feature(explainer, 8, _generations(8)).feature == 8 and len(server.requests) == 3  # a new request
    server.script.append((200, json.dumps({"choices": [{"message": {"content": "No."}}]})))
    with pytest.raises(UserError, match="not the JSON object"):
        describe_feature(_explainer(server, retries=0).with_cache(tmp_path / "cache"), 9, _generations(9))
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3  # a rejected answer is never cached
    other = Explainer(base_url=server.url, model="judge-2", backoff=0.0).with_cache(tmp_path / "cache")
    describe_feature(other, 7, _generations())
    assert len(server.requests) == 5  # another model: another request


def test_markdown_table_has_table_4_layout():
    groups = [FeatureGroup("Self-Correction", (3, 5), "checks | fixes", "Semantic", "re-checks", "commits.")]
    table = markdown_table(groups, [FeatureDescription(3, "verifies\nsteps")]).splitlines()
    assert table[0] == "| Group | Features | Possible function | Effect type | Observed behavior |"
    assert table[2] == ("| Self-Correction | 3, 5 | checks \\| fixes | Semantic "
                        "| Strengthening: re-checks. Weakening: commits. |")
    assert table[-1] == "| 3 | verifies steps | – | – | – |"


def test_an_unreachable_endpoint_is_retried_with_backoff_then_one_line(monkeypatch):
    waits = []
    monkeypatch.setattr("time.sleep", waits.append)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    explainer = Explainer(base_url=f"http://127.0.0.1:{port}/v1", retries=2, backoff=1.5, timeout=2)
    with pytest.raises(UserError) as err:
        explainer.chat([])
    assert waits == [1.5, 3.0]
    assert re.fullmatch(rf"cannot reach the explainer at http://127.0.0.1:{port}/v1/chat/completions "
                        r"\(ConnectError: .*\): check explainer.base_url, .*", str(err.value))
