import re

import pytest

from reasoning_sae import UserError, load_lm
from reasoning_sae.models.config import known_model_configs, model_config
from reasoning_sae.models.loading import embedded_gguf, load_tokenizer, resolve_source

PAPER_MODELS = [
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "meta-llama/Llama-3.1-8B",
]


def test_alias_resolves_to_the_packaged_gguf_without_network():
    source = resolve_source("smollm2-135m-instruct")
    assert source.kind == "gguf" and source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert embedded_gguf("smollm2-135m-instruct").stat().st_size > 50_000_000


def test_gguf_path_and_directory_sources(tmp_path):
    gguf = embedded_gguf("smollm2-135m-instruct")
    assert resolve_source(str(gguf)).kind == "gguf"
    assert resolve_source(str(gguf.parent)) == resolve_source(str(gguf))
    (tmp_path / "config.json").write_text("{}")
    assert resolve_source(str(tmp_path)).kind == "dir"
    assert resolve_source("org/model").kind == "hub"


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_models_have_pinned_revisions_and_token_ids(name):
    cfg = known_model_configs()[name]
    assert re.fullmatch(r"[0-9a-f]{40}", cfg.revision)
    assert cfg.bos_token_id is not None and cfg.eos_token_id is not None
    assert set(cfg.ignore_token_ids) == {cfg.bos_token_id, cfg.eos_token_id}
    assert not cfg.trust_remote_code and cfg.layer is not None


def test_paper_model_specifics():
    llama = model_config("r1-distill-llama-8b")
    assert (llama.name, llama.layer, llama.think_end_token_id) == ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 19, 128014)
    assert llama.ignore_token_ids == [128000, 128001]
    assert model_config("meta-llama/Llama-3.1-8B").think_end is None
    assert model_config("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B").think_end_token_id == 151649


def test_overrides_and_unknown_settings():
    assert model_config("smollm2", dtype="bfloat16").dtype == "bfloat16"
    with pytest.raises(UserError, match="unknown model setting"):
        model_config("smollm2", colour="red")


def test_unknown_alias_names_the_choices():
    with pytest.raises(UserError, match=r"unknown model 'smollm3'.*smollm2-135m-instruct"):
        load_lm("smollm3")


def test_missing_gguf_file():
    with pytest.raises(UserError, match="does not exist"):
        load_lm("/nonexistent/model.gguf")


def test_hub_id_while_offline_says_how_to_use_a_local_copy(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError, match=r"offline.*hf download deepseek-ai/DeepSeek-R1-Distill-Llama-8B --revision 6a6f"):
        load_lm("deepseek-ai/DeepSeek-R1-Distill-Llama-8B")


def test_local_directory_loads_model_and_tokenizer(tiny_llama_dir):
    lm = load_lm(str(tiny_llama_dir), device="cpu", dtype="float32")
    assert lm.n_layers == 4 and lm.d_model == 32
    assert load_tokenizer(model_config(str(tiny_llama_dir)))("wait")["input_ids"]


def test_config_shape_mismatch_is_reported(tiny_llama_dir):
    with pytest.raises(UserError, match="n_layers=4 but its config says 30"):
        load_lm(str(tiny_llama_dir), n_layers=30)
