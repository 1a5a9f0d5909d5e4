"""The embedded GGUF as a cached HF folder: same weights and tokenizer, converted once, written atomically."""

import json

import pytest
import torch

from reasoning_sae.models import gguf
from reasoning_sae.models.loading import embedded_gguf, model_path


def test_folder_is_cached_and_loads_the_gguf_weights_and_tokenizer(smollm2):
    folder = gguf.hf_folder(embedded_gguf("smollm2-135m-instruct"))
    assert model_path("smollm2-135m-instruct") == str(folder)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert gguf.hf_folder(embedded_gguf("smollm2-135m-instruct")) == folder
    assert (folder / "config.json").stat().st_mtime_ns == stamp  # not converted again

    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = embedded_gguf("smollm2-135m-instruct")
    direct = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    for name, tensor in direct.state_dict().items():
        assert torch.equal(tensor, smollm2.model.state_dict()[name]), name
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    text = "Wait, let me think: 12 + 7 = 19.</think> So the answer is \\boxed{19}."
    assert smollm2.tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert smollm2.tokenizer.chat_template == tokenizer.chat_template


def test_failed_conversion_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("REASONING_SAE_CACHE", str(tmp_path))

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        gguf.hf_folder(embedded_gguf("smollm2-135m-instruct"))
    assert [p.name for p in (tmp_path / "gguf").iterdir() if not p.name.endswith(".lock")] == []


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REASONING_SAE_CACHE", str(tmp_path / "c"))
    assert gguf.cache_root() == tmp_path / "c"
    monkeypatch.delenv("REASONING_SAE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert gguf.cache_root() == tmp_path / "x" / "reasoning_sae"
