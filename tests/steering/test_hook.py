import pytest
import torch

from reasoning_sae import SparseAutoencoder, UserError
from reasoning_sae.steering import SteeringHook, steer, steering_vectors
from tests.helpers import random_sae  # test_bad_inputs.py and test_readme.py import it from here


def _hook(sae, features, targets, mode):
    return SteeringHook(steering_vectors(sae, features, gamma=1.0, mode=mode, f_max=targets), "all")


def _as(sae, architecture: str, **cfg) -> SparseAutoencoder:
    """`sae`'s weights in an SAE of another architecture (its extra state at its initial value)."""
    other = SparseAutoencoder(sae.cfg.replace(architecture=architecture, **cfg))
    other.load_state_dict(sae.state_dict(), strict=False)
    other.feature_stats = sae.feature_stats
    return other


ARCHITECTURES = {"standard": {}, "topk": {"k": 4}, "jumprelu": {}, "batchtopk": {"k": 4},
                 "matryoshka_batchtopk": {"k": 4, "matryoshka_widths": [8, 40]}}


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


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_clamp_on_a_jumprelu_sae_reads_each_latent_at_its_threshold(apply_b_dec):
    """x + (gamma * f_max - f_i(x)) W_dec[i] with f_i from sae.encode: a latent whose pre-activation is positive but
    below its threshold is 0 (clamp adds the whole target), one above it is its pre-activation."""
    sae = _as(random_sae(d_in=24, d_sae=40, apply_b_dec=apply_b_dec), "jumprelu")
    x = torch.randn(3, 7, 24, generator=torch.Generator().manual_seed(1)) * 5
    features, targets = [3, 17, 30], [2.5, 0.0, 7.0]
    with torch.no_grad():
        pre_NG = sae.encode_pre(x)[..., features].flatten(0, 1)
        for i, p in zip(features, pre_NG.T, strict=True):  # half the positive ones pass, none at the threshold
            above = p[p > 0].sort().values
            sae.threshold[i] = above[len(above) // 2 - 1: len(above) // 2 + 1].mean()
        feats = sae.encode(x)
        f_BSG = feats[..., features]
        assert ((f_BSG == 0) & (sae.encode_pre(x)[..., features] > 0)).sum() >= 3 and (f_BSG > 0).sum() >= 3
        expected = x + (torch.tensor(targets) - f_BSG) @ sae.W_dec[features]
        got = _hook(sae, features, targets, "clamp")(None, (), {}, x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        error = x - sae.decode(feats)  # the released code's form: set the latents in the full SAE, keep its error
        feats[..., features] = torch.tensor(targets)
        torch.testing.assert_close(got, sae.decode(feats) + error, atol=1e-5, rtol=1e-5)
        relu = _hook(_as(sae, "standard"), features, targets, "clamp")(None, (), {}, x)
    assert (relu - got).abs().max() > 0.1  # a ReLU reading would steer differently


def test_clamp_on_a_batchtopk_sae_reads_its_running_threshold_in_memory_and_saved(tmp_path):
    sae = _as(random_sae(d_in=24, d_sae=40), "matryoshka_batchtopk", **ARCHITECTURES["matryoshka_batchtopk"])
    sae.topk_threshold.fill_(0.6)
    x = torch.randn(2, 9, 24, generator=torch.Generator().manual_seed(2)) * 5
    features, targets = [1, 8, 22], [3.0, 1.0, 5.0]
    sae.save(tmp_path / "sae")
    saved = SparseAutoencoder.load(tmp_path / "sae")
    assert saved.cfg.architecture == "jumprelu"
    with torch.no_grad():
        f_BSG = sae.encode(x)[..., features]
        pre_BSG = sae.encode_pre(x)[..., features]
        assert ((pre_BSG > 0) & (pre_BSG <= 0.6)).any() and (f_BSG > 0).any()
        expected = x + (torch.tensor(targets) - f_BSG) @ sae.W_dec[features]
        for steered in (sae, saved):
            got = _hook(steered, features, targets, "clamp")(None, (), {}, x)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_standard_clamp_is_the_relu_update_bit_for_bit():
    sae = random_sae(d_in=24, d_sae=40, apply_b_dec=True)
    vectors = steering_vectors(sae, [3, 17], gamma=1.0, mode="clamp", f_max=[2.5, 7.0])
    assert vectors.threshold_G.tolist() == [0.0, 0.0]
    x = torch.randn(3, 7, 24) * 5
    relu_BSG = torch.relu((x - vectors.b_dec_D) @ vectors.enc_GD.T + vectors.enc_bias_G)
    assert torch.equal(vectors.update(x), (vectors.targets_G - relu_BSG) @ vectors.vectors_GD)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_add_steers_every_architecture_and_clamp_refuses_topk(architecture):
    sae = _as(random_sae(d_in=24, d_sae=40), architecture, **ARCHITECTURES[architecture])
    x = torch.randn(2, 5, 24)
    with torch.no_grad():
        got = _hook(sae, [4], [6.0], "add")(None, (), {}, x)
        torch.testing.assert_close(got, x + 6.0 * sae.W_dec[4], atol=1e-6, rtol=0)
    if architecture == "topk":
        with pytest.raises(UserError, match=r"^steering mode clamp needs each latent's activation from its own "
                                            r"pre-activation, which a topk SAE does not give: use mode=add$"):
            steering_vectors(sae, [4], mode="clamp", f_max=1.0)
    else:
        assert steering_vectors(sae, [4], mode="clamp", f_max=1.0).mode == "clamp"


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


def test_a_vector_scaled_to_a_features_update_norm_moves_the_stream_as_far_as_the_feature():
    from reasoning_sae.steering import update_norm, vector_steering

    sae = random_sae(d_in=24, d_sae=40)
    zeros = torch.zeros(1, 1, 24)
    f_max = sae.feature_stats["max_activation"]
    assert update_norm(sae, 7) == pytest.approx(float(f_max[7]) * float(sae.W_dec[7].detach().norm()), rel=1e-6)
    direction = torch.randn(24)
    for features in ([7], [3, 30]):
        norm = update_norm(sae, features)
        feature_update = _hook(sae, features, [-2.0 * float(f_max[f]) for f in features], "add")(None, (), {}, zeros)
        vector_update = SteeringHook(vector_steering(direction, gamma=-2.0, norm=norm), "all")(None, (), {}, zeros)
        assert vector_update.dtype == torch.float32
        assert float(vector_update.norm()) == pytest.approx(float(feature_update.norm()), rel=1e-5)
        torch.testing.assert_close(vector_update[0, 0], -2.0 * norm * direction / direction.norm())
    summed = sae.W_dec[3].detach() + 2 * sae.W_dec[30].detach()
    assert update_norm(sae, [3, 30], f_max=[1.0, 2.0]) == pytest.approx(float(summed.norm()))
    raw = SteeringHook(vector_steering(direction, gamma=0.5), "all")(None, (), {}, zeros)  # no norm: gamma * v
    torch.testing.assert_close(raw[0, 0], 0.5 * direction)


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_steer_vector_adds_exactly_the_vector_at_the_chosen_positions(smollm2, positions):
    """The layer's output is captured before and after the steering hook, for the prompt pass and each cached
    decoding step of a generation."""
    from reasoning_sae.steering import steer_vector

    direction = torch.randn(576, generator=torch.Generator().manual_seed(1))
    expected = 3.0 * 5.0 * direction / direction.norm()
    layer, seen = smollm2.layers[6], []
    before = layer.register_forward_hook(lambda _m, _a, out: seen.append(out[0] if isinstance(out, tuple) else out))
    try:
        with steer_vector(smollm2, direction, "blocks.6.hook_resid_post", gamma=3.0, norm=5.0, positions=positions):
            after = layer.register_forward_hook(lambda _m, _a, out: seen.append(out[0] if isinstance(out, tuple) else out))
            smollm2.generate(["What is 7 times 8?"], max_new_tokens=3)
            after.remove()
        assert len(layer._forward_hooks) == 1  # steer_vector's hook is gone
    finally:
        before.remove()
    passes = list(zip(seen[::2], seen[1::2], strict=True))
    assert len(passes) == 3 and passes[0][0].shape[1] > 1 and all(p[0].shape[1] == 1 for p in passes[1:])
    for i, (clean, steered) in enumerate(passes):
        on = positions == "all" or (positions == "prompt") == (i == 0)
        torch.testing.assert_close(steered - clean, (expected if on else 0 * expected).expand_as(clean), atol=1e-4,
                                   rtol=0)


def test_steer_vector_bad_input(smollm2):
    from reasoning_sae.steering import steer_vector

    hook = "blocks.6.hook_resid_post"
    for kwargs, message in [
        ({"vector_D": torch.ones(32), "hook": hook}, "has shape \\(32,\\) but the model's residual stream has 576"),
        ({"vector_D": torch.ones(576), "hook": "blocks.6.hook_resid_pre"}, "steering reads blocks.L.hook_resid_post"),
        ({"vector_D": torch.ones(576), "hook": hook, "positions": "middle"}, "unknown steering positions"),
        ({"vector_D": torch.zeros(576), "hook": hook, "norm": 2.0}, "the steering vector is zero"),
        ({"vector_D": torch.full((576,), float("nan")), "hook": hook}, "NaN or infinite"),
        ({"vector_D": torch.ones(576), "hook": hook, "gamma": float("inf")}, "must be finite"),
    ]:
        with pytest.raises(UserError, match=message), steer_vector(smollm2, **kwargs):
            pass
