"""Shared fixtures: the embedded model (loaded once per test process), a tiny random Llama, composed configs."""

import os
from pathlib import Path

import pytest
import torch

from reasoning_sae.models.config import conf_dir
from tests.helpers import random_sae, tiny

os.environ.setdefault("WANDB_MODE", "offline")


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


@pytest.fixture
def compose(tmp_path):
    """Compose a stage's config as the CLI would, with artifacts under tmp_path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    def make(stage: str = "corpus", overrides: tuple[str, ...] = ()):
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name=stage, overrides=[f"paths.artifacts={tmp_path / 'artifacts'}", *overrides])

    return make


@pytest.fixture
def run_figures(compose, tmp_path):
    """Run the figures stage (on artifacts written under tmp_path, e.g. by helpers.make_artifacts)."""
    from reasoning_sae.stages import figures

    def run(*overrides: str) -> Path:
        cfg = compose("figures", (f"paths.paper={tmp_path / 'paper'}", "figures.contexts=3", *overrides))
        return figures.run(cfg)

    return run


@pytest.fixture
def vocab_only(compose, tiny_llama_dir, tmp_path):
    """A run with the corpus and vocab stages done and a user SAE (sae_source=local, f_max a number): enough for the
    evaluate stage's validation, cell keys and engine arguments, with no model loaded."""
    from reasoning_sae.stages import corpus, vocab

    sae = random_sae(d_in=32, d_sae=16)
    sae.cfg.metadata["hook_name"] = "blocks.1.hook_resid_post"  # not model.layer (2): the SAE's layer wins
    sae.save(tmp_path / "user_sae")
    base = (*tiny(tiny_llama_dir), "sae_source=local", f"sae_source.path={tmp_path / 'user_sae'}",
            "steering.features=[3]", "steering.f_max=2.0", "benchmark.word_ban.seeds=[0]")
    for stage in (corpus, vocab):
        stage.run(compose(stage.__name__.rsplit(".", 1)[-1], base))
    return lambda *extra: compose("evaluate", (*base, *extra))
