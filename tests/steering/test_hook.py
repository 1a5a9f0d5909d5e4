import pytest
import torch

from reasoning_sae import UserError
from reasoning_sae.steering import SteeringHook, steer, steering_vectors
from tests.helpers import random_sae  # test_bad_inputs.py and test_readme.py import it from here


def _hook(sae, features, targets, mode):
    return SteeringHook(steering_vectors(sae, features, gamma=1.0, mode=mode, f_max=targets), "all")


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_rank_one_clamp_equals_the_full_sae_with_its_error_kept(apply_b_dec):
    sae = random_sae(d_in=24, d_sae=40, apply_b_dec=apply_b_dec)
    x = torch.randn(3, 7, 24) * 5
    features, targets = [3, 17, 30], [2.5, 0.0, 7.0]
    with torch.no_grad():
        feats = sae.encode(x)
        error = x - sae.decode(feats)
        feats[..., features] = torch.tensor(targets)
        expected = sae.decode(feats) + error
        got = _hook(sae, features, targets, "clamp")(None, (), {}, x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_add_is_equation_7():
    sae = random_sae(d_in=24, d_sae=40)
    x = torch.randn(2, 5, 24)
    with torch.no_grad():
        got = _hook(sae, [4], [2.0 * 3.0], "add")(None, (), {}, (x, "other"))
    assert got[1] == "other"  # tuple outputs stay tuples
    torch.testing.assert_close(got[0], x + 2.0 * 3.0 * sae.W_dec[4], atol=1e-6, rtol=0)


def test_kv_cache_and_positions(smollm2):
    sae = random_sae()
    prompts = ["What is 7 times 8?", "Name a prime number."]
    plain = smollm2.generate(prompts, max_new_tokens=8)
    for positions in ("all", "generated"):
        with steer(smollm2, sae, feature=[5, 9], gamma=[4.0, -3.0], mode="add", positions=positions):
            cached = smollm2.generate(prompts, max_new_tokens=8)
            uncached = smollm2.generate(prompts, max_new_tokens=8, use_cache=False)
        assert cached == uncached and cached != plain


def test_generated_positions_leave_the_prompt_logits_alone(smollm2):
    sae = random_sae()
    ids = smollm2.tokenizer(["Hmm, wait. Let me check that again."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        clean = smollm2.model(ids).logits
        with steer(smollm2, sae, feature=5, gamma=4.0, positions="generated"):
            generated_only = smollm2.model(ids).logits
        with steer(smollm2, sae, feature=5, gamma=4.0, positions="prompt", mode="clamp"):
            prompt_only = smollm2.model(ids).logits
    torch.testing.assert_close(generated_only, clean, atol=0, rtol=0)
    assert not torch.allclose(prompt_only, clean, atol=1e-3)


def test_the_hook_is_removed_after_the_block_and_on_errors(smollm2):
    sae = random_sae()
    layer = smollm2.layers[6]
    before = len(layer._forward_hooks)
    with steer(smollm2, sae, feature=1, gamma=2.0):
        assert len(layer._forward_hooks) == before + 1
    assert len(layer._forward_hooks) == before
    with pytest.raises(RuntimeError), steer(smollm2, sae, feature=1, gamma=2.0):
        raise RuntimeError("boom")
    assert len(layer._forward_hooks) == before


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"feature": 32}, "feature index out of range"),
    ({"feature": -1}, "feature index out of range"),
    ({"feature": 1, "gamma": float("nan")}, "gamma must be finite"),
    ({"feature": 1, "gamma": float("inf")}, "gamma must be finite"),
    ({"feature": 1, "mode": "multiply"}, "unknown steering mode"),
    ({"feature": 1, "positions": "middle"}, "unknown steering positions"),
    ({"feature": [1, 2], "gamma": [1.0, 2.0, 3.0]}, "gamma has 3 values for 2 features"),
])
def test_bad_input(smollm2, kwargs, message):
    with pytest.raises(UserError, match=message), steer(smollm2, random_sae(), **kwargs):
        pass


def test_sae_for_another_model_or_without_f_max(smollm2):
    other = random_sae(d_in=4096)
    with pytest.raises(UserError, match="does not match the model width"), steer(smollm2, other, feature=1):
        pass
    sae = random_sae()
    sae.feature_stats = {}
    with pytest.raises(UserError, match="no f_max"), steer(smollm2, sae, feature=1):
        pass
    with steer(smollm2, sae, feature=1, f_max=2.0) as hook:
        assert hook.vectors.targets_G.tolist() == [4.0]
