import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from reasoning_sae import UserError
from reasoning_sae.lm_eval import task_dir
from reasoning_sae.lm_eval.__main__ import with_our_tasks
from reasoning_sae.lm_eval.model import SteeredLM, read_ban, think_end_id
from reasoning_sae.models import ModelConfig
from reasoning_sae.steering import SteeringHook, steer
from reasoning_sae.vocab.vocabulary import DEFAULT_VOCABULARY, save_vocabulary
from tests.helpers import random_sae

GREEDY = {"until": ["Problem:"], "do_sample": False, "max_gen_toks": 8}


def _requests(lm, questions):
    return [Instance("generate_until", {}, (lm.chat_prompt(q), dict(GREEDY)), i) for i, q in enumerate(questions)]


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("sae") / "sae"
    random_sae().save(path)
    return path


def test_steered_model_generates_what_steer_does(smollm2, sae_dir):
    questions = ["What is 7 times 8?", "Name a prime number."]
    steered = SteeredLM(pretrained=smollm2, sae=str(sae_dir), features="5+9", gamma="4+-3", f_max="2+3",
                        batch_size=2)
    got = steered.generate_until(_requests(smollm2, questions))
    plain = HFLM(pretrained=smollm2.model, tokenizer=smollm2.tokenizer, batch_size=2)
    with steer(smollm2, random_sae(), feature=[5, 9], gamma=[4.0, -3.0], f_max=[2.0, 3.0]):
        expected = plain.generate_until(_requests(smollm2, questions))
    assert got == expected
    assert got != plain.generate_until(_requests(smollm2, questions))
    hooks = smollm2.layers[6]._forward_hooks.values()
    assert not any(isinstance(h, SteeringHook) for h in hooks)  # steering is on only during the model's own calls


def test_unsteered_model_is_lm_evals_hf_model(smollm2):
    questions = ["Name a prime number."]
    baseline = SteeredLM(pretrained=smollm2, batch_size=1)
    plain = HFLM(pretrained=smollm2.model, tokenizer=smollm2.tokenizer, batch_size=1)
    assert baseline.generate_until(_requests(smollm2, questions)) == plain.generate_until(_requests(smollm2, questions))
    # thinking ends where the model's config says: </think>, plain text (several tokens) for SmolLM2
    assert (baseline.think_end, baseline.think_end_id) == (smollm2.config.think_end, None) == ("</think>", None)


def test_think_end_id_is_the_configured_id_else_the_tokenizers_single_token():
    tokenizer = SimpleNamespace(unk_token_id=0, convert_tokens_to_ids=lambda t: {"</think>": 7, "<end>": 9}.get(t, 0))
    assert think_end_id(tokenizer, ModelConfig("m", think_end="</think>")) == 7
    assert think_end_id(tokenizer, ModelConfig("m", think_end="<end>")) == 9
    assert think_end_id(tokenizer, ModelConfig("m", think_end="</think>", think_end_token_id=128014)) == 128014
    assert think_end_id(tokenizer, ModelConfig("m", think_end="<several tokens>")) is None  # unknown: the unk id
    assert think_end_id(tokenizer, ModelConfig("m", think_end=None)) is None


@pytest.mark.parametrize("args, message", [
    ({"features": "32"}, "feature index out of range"),
    ({"features": "1", "gamma": math.inf}, "gamma must be finite"),
    ({"features": "1", "gamma": "nan"}, "gamma must be finite"),
    ({"features": "one"}, "cannot read 'one' as a list of int"),
    ({"features": ""}, "sae given without features"),
    ({"features": "1", "mode": "multiply"}, "unknown steering mode"),
    ({"features": "1", "site": "attn_out"}, r"unknown steering site 'attn_out': use one of \('resid_post', 'mlp_out'\)"),
])
def test_bad_steering_args(smollm2, sae_dir, args, message):
    with pytest.raises(UserError, match=message):
        SteeredLM(pretrained=smollm2, sae=str(sae_dir), f_max=1.0, **args)


def test_bad_sae_or_f_max(smollm2, sae_dir, tmp_path):
    with pytest.raises(UserError, match="features given without an SAE"):
        SteeredLM(pretrained=smollm2, features="3")
    random_sae(d_in=4096).save(tmp_path / "wide")
    with pytest.raises(UserError, match="does not match the model width"):
        SteeredLM(pretrained=smollm2, sae=str(tmp_path / "wide"), features="3", f_max=1.0)
    (tmp_path / "f_max.json").write_text(json.dumps({"4": 2.5}))
    with pytest.raises(UserError, match=r"has no f_max for features \[3\]"):
        SteeredLM(pretrained=smollm2, sae=str(sae_dir), features="3", f_max=str(tmp_path / "f_max.json"))
    model = SteeredLM(pretrained=smollm2, sae=str(sae_dir), features="4", gamma=2, f_max=str(tmp_path / "f_max.json"))
    assert model.steering["f_max"] == [2.5]


def _vector_file(path: Path, d: int = 576, hook: str = "blocks.6.hook_resid_post") -> str:
    from safetensors.torch import save_file

    save_file({"diffmean": torch.randn(d, generator=torch.Generator().manual_seed(2))}, str(path),
              metadata={"hook": hook})
    return str(path)


def test_a_steering_vector_generates_what_steer_vector_does(smollm2, tmp_path):
    from reasoning_sae.steering import steer_vector
    from reasoning_sae.steering.vector import load_vector

    vector = _vector_file(tmp_path / "v.safetensors")
    questions = ["What is 7 times 8?", "Name a prime number."]
    steered = SteeredLM(pretrained=smollm2, vector=vector, vector_norm=6.0, gamma=2, positions="generated",
                        batch_size=2)
    assert (steered.steering["norm"], steered.steering["gamma"], steered.steering["hook"]) == (
        6.0, 2.0, "blocks.6.hook_resid_post")
    got = steered.generate_until(_requests(smollm2, questions))
    plain = HFLM(pretrained=smollm2.model, tokenizer=smollm2.tokenizer, batch_size=2)
    with steer_vector(smollm2, load_vector(vector).vector_D, "blocks.6.hook_resid_post", gamma=2.0, norm=6.0,
                      positions="generated"):
        expected = plain.generate_until(_requests(smollm2, questions))
    assert got == expected and got != plain.generate_until(_requests(smollm2, questions))
    assert not any(isinstance(h, SteeringHook) for h in smollm2.layers[6]._forward_hooks.values())


def test_bad_vector_args_fail_before_the_model_loads(smollm2, sae_dir, tmp_path, monkeypatch):
    from reasoning_sae.lm_eval import model as model_module

    vector = _vector_file(tmp_path / "v.safetensors")
    narrow = _vector_file(tmp_path / "narrow.safetensors", d=32)
    monkeypatch.setattr(model_module, "load_lm", lambda *_: pytest.fail("the model loaded"))
    for args, message in [
        ({"vector": str(tmp_path / "none.safetensors")}, "does not exist: run the score stage"),
        ({"vector": narrow}, "the steering vector has 32 dimensions but the model's residual stream has 576"),
        ({"vector": vector, "vector_hook": "blocks.99.hook_resid_post"}, "layer 99"),
        ({"vector": vector, "sae": str(sae_dir), "features": "3"}, "drop sae= and features="),
        ({"vector": vector, "mode": "clamp"}, "steers as mode=add"),
        ({"vector": vector, "gamma": "1+2"}, "takes one gamma"),
        ({"vector": vector, "vector_norm": "big"}, "cannot read 'big' as a list of float"),
        ({"vector": vector, "vector_norm": -1}, "must be finite \(the norm >= 0\)"),
    ]:
        with pytest.raises(UserError, match=message) as err:
            SteeredLM(pretrained="smollm2-135m-instruct", **args)
        assert "\n" not in str(err.value)


def test_ban_words_from_a_vocabulary_file_or_a_list(tmp_path):
    save_vocabulary(DEFAULT_VOCABULARY, tmp_path / "vocabulary.json")
    assert read_ban(str(tmp_path / "vocabulary.json")) == list(DEFAULT_VOCABULARY)
    assert read_ban(" two+Two") == [" two", "Two"] and read_ban(None) == []


def test_cli_adds_our_task_directory():
    ours = ["--include_path", str(task_dir())]
    assert with_our_tasks(["--model", "hf"]) == ["run", "--model", "hf", *ours]
    assert with_our_tasks(["ls", "tasks"]) == ["ls", "tasks", *ours]
    assert with_our_tasks(["run", "--include_path", "/x"]) == ["run", "--include_path", "/x"]
    assert with_our_tasks(["--help"]) == ["--help"]


def test_cli_is_lm_eval_with_our_tasks_and_model():
    listing = subprocess.run([sys.executable, "-m", "reasoning_sae.lm_eval", "ls", "tasks"],
                             capture_output=True, text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr[-2000:]
    for task in ("reasoning_demo", "math500", "aime24_nofigures", "gpqa_diamond_openai"):
        assert task in listing.stdout
    bad = subprocess.run([sys.executable, "-m", "reasoning_sae.lm_eval", "--model", "sae_steered", "--tasks",
                          "no_such_task", "--model_args", "pretrained=smollm2-135m-instruct"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "no_such_task" in bad.stderr + bad.stdout
