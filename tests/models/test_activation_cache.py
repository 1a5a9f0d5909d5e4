"""models/activation_cache.py: a second pass over the same tokens reads the first one's bytes, never the model."""

import numpy as np
import pytest
import torch

from reasoning_sae.models import load_lm
from reasoning_sae.models.activation_cache import ActivationCache

HOOK = "blocks.1.hook_resid_post"


def passes(lm, ids, batch=3):
    return [(b.start, b.ids_BS, b.keep_BS, b.acts) for b in lm.iter_activations(ids, HOOK, batch, (0,), 1)]


@pytest.fixture
def lm(tiny_llama_dir):
    return load_lm(str(tiny_llama_dir), device="cpu")


def ids(seed=0, n=7, s=12):
    return np.random.default_rng(seed).integers(3, 500, size=(n, s))


def test_second_pass_reads_the_first_ones_bytes_without_running_the_model(lm, tmp_path, monkeypatch):
    plain = passes(lm, ids())
    lm.activation_cache = ActivationCache(tmp_path, 2**30)
    first = passes(lm, ids())
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    monkeypatch.setattr(lm, "activations", lambda *a, **k: pytest.fail("the model ran on a cached pass"))
    second = passes(lm, ids())
    for a, b, c in zip(plain, first, second, strict=True):
        assert a[0] == b[0] == c[0]
        assert torch.equal(a[1], c[1]) and torch.equal(a[2], c[2])
        assert torch.equal(a[3], b[3]) and torch.equal(a[3], c[3])


def test_other_tokens_batching_or_weights_miss(lm, tmp_path):
    cache = lm.activation_cache = ActivationCache(tmp_path, 2**30)
    key = cache.key(lm, ids(), HOOK, 3)
    assert cache.key(lm, ids(seed=1), HOOK, 3) != key
    assert cache.key(lm, ids(), HOOK, 4) != key
    assert cache.key(lm, ids(), "blocks.0.hook_resid_post", 3) != key
    with torch.no_grad():
        lm.layers[0].mlp.up_proj.weight[0, 0] += 1e-3
    assert cache.key(lm, ids(), HOOK, 3) != key


def test_a_pass_over_the_size_limit_or_a_limit_of_zero_writes_nothing(lm, tmp_path):
    for limit in (0, 7 * 12 * lm.d_model * 4 - 1):
        lm.activation_cache = ActivationCache(tmp_path, limit)
        passes(lm, ids())
    assert not list(tmp_path.iterdir())
    lm.activation_cache = ActivationCache(tmp_path, 7 * 12 * lm.d_model * 4)
    passes(lm, ids())
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
