"""steering site: clamp reads f_i from resid_post (paper v2) or from layer L's MLP output (the released code, which
hooked vLLM's decoder-layer output[0]: DIGEST 5.3), on a tiny random Llama in float32."""

import contextlib

import pytest
import torch

from reasoning_sae import UserError, load_lm
from reasoning_sae.steering import SteeringHook, steer
from tests.helpers import random_sae

LAYER, FEATURE, F_MAX, GAMMA = 2, 7, 1.5, 3.0


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_lm(str(tiny_llama_dir), device="cpu", dtype="float32")


def tiny_sae(apply_b_dec=False, hook=f"blocks.{LAYER}.hook_resid_post"):
    sae = random_sae(d_in=32, d_sae=16, apply_b_dec=apply_b_dec, decoder_norm=1.0)
    sae.cfg.metadata.update(hook_name=hook, model_name=None)
    with torch.no_grad():
        sae.W_enc.mul_(100.0)  # the tiny model's activations are small (norms ~0.01-0.2): make f_i vary with them
        sae.b_enc[FEATURE] = 4.0  # the feature fires on both the MLP output and resid_post: the sites differ
    return sae


def _ids(lm):
    return lm.tokenizer(["Wait, let me check that again: 7 times 8 is 56."], return_tensors="pt")["input_ids"]


def _outputs(lm, ids, layer=-1, **steering):
    """The output of decoder layer `layer` (default: the last; a hook registered after the steering one)."""
    captured = []
    with torch.no_grad(), steer(lm, **steering) if steering else contextlib.nullcontext():
        handle = lm.layers[layer].register_forward_hook(lambda _m, _a, out: captured.append(out))
        try:
            lm.model(ids)
        finally:
            handle.remove()
    return captured[0]


def _released_clamp(sae, target):
    """The released code's hook (DIGEST 5.3), moved onto HF's MLP: the full SAE on the MLP output, feature i set
    to target, the SAE error kept."""
    def hook(_module, _args, mlp_out):
        feats = sae.encode(mlp_out)
        error = mlp_out - sae.decode(feats)
        feats[..., FEATURE] = target
        return sae.decode(feats) + error
    return hook


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_clamp_at_mlp_out_is_the_released_codes_clamp_of_the_mlp_output(tiny, apply_b_dec):
    sae = tiny_sae(apply_b_dec)
    ids = _ids(tiny)
    steering = {"sae": sae, "feature": FEATURE, "gamma": GAMMA, "f_max": F_MAX, "mode": "clamp"}
    handle = tiny.layers[LAYER].mlp.register_forward_hook(_released_clamp(sae, GAMMA * F_MAX))
    try:
        expected = _outputs(tiny, ids)
    finally:
        handle.remove()
    at_mlp = _outputs(tiny, ids, site="mlp_out", **steering)
    torch.testing.assert_close(at_mlp, expected, atol=1e-5, rtol=1e-4)
    at_resid = _outputs(tiny, ids, **steering)
    assert (at_mlp - at_resid).abs().max() > 0.1  # f_i of the MLP output is not f_i of resid_post
    assert (at_mlp - _outputs(tiny, ids)).abs().max() > 0.1
    assert not tiny.layers[LAYER]._forward_hooks and not tiny.layers[LAYER].mlp._forward_hooks


def test_the_sites_read_different_activations_of_the_same_forward(tiny):
    """f_i at each site, from the hook's own stash vs activations captured by hand."""
    sae = tiny_sae()
    ids = _ids(tiny)
    seen = {}
    hooks = [tiny.layers[LAYER].mlp.register_forward_hook(lambda _m, _a, out: seen.__setitem__("mlp", out)),
             tiny.layers[LAYER].register_forward_hook(lambda _m, _a, out: seen.__setitem__("resid", out))]
    try:
        with torch.no_grad():
            tiny.model(ids)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        f_mlp, f_resid = (sae.encode(seen[k])[..., FEATURE] for k in ("mlp", "resid"))
    assert (f_mlp > 0).all() and (f_resid > 0).all() and (f_mlp - f_resid).abs().mean() > 0.1
    target = GAMMA * F_MAX
    for site, f in (("mlp_out", f_mlp), ("resid_post", f_resid)):
        steered = _outputs(tiny, ids, LAYER, sae=sae, feature=FEATURE, gamma=GAMMA, f_max=F_MAX, mode="clamp",
                           site=site)
        torch.testing.assert_close(steered, seen["resid"] + (target - f)[..., None] * sae.W_dec[FEATURE],
                                   atol=1e-5, rtol=1e-5)


def test_add_is_the_same_at_both_sites(tiny):
    sae = tiny_sae()
    ids = _ids(tiny)
    steering = {"sae": sae, "feature": [FEATURE, 3], "gamma": [GAMMA, -2.0], "f_max": [F_MAX, 1.0], "mode": "add"}
    at_mlp = _outputs(tiny, ids, site="mlp_out", **steering)
    torch.testing.assert_close(at_mlp, _outputs(tiny, ids, **steering), atol=0, rtol=0)
    assert (at_mlp - _outputs(tiny, ids)).abs().max() > 0.1


def test_positions_at_mlp_out(tiny):
    """Prompt / generated positions with site mlp_out: the prompt's logits untouched by generated-only steering,
    and cached generation equal to uncached."""
    sae = tiny_sae()
    ids = _ids(tiny)
    steering = {"sae": sae, "feature": FEATURE, "gamma": GAMMA, "f_max": F_MAX, "mode": "clamp", "site": "mlp_out"}
    clean = _outputs(tiny, ids)
    torch.testing.assert_close(_outputs(tiny, ids, positions="generated", **steering), clean, atol=0, rtol=0)
    torch.testing.assert_close(_outputs(tiny, ids, positions="prompt", **steering),
                               _outputs(tiny, ids, positions="all", **steering), atol=0, rtol=0)
    prompts = ["What is 7 times 8?", "Name a prime number."]
    plain = tiny.generate(prompts, max_new_tokens=6)
    for positions in ("all", "prompt", "generated"):
        with steer(tiny, positions=positions, **steering) as hook:
            cached = tiny.generate(prompts, max_new_tokens=6)
            uncached = tiny.generate(prompts, max_new_tokens=6, use_cache=False)
        assert isinstance(hook, SteeringHook) and hook.vectors.site == "mlp_out"
        assert cached == uncached, positions
        assert cached != plain, positions


def test_bad_site(tiny):
    with pytest.raises(UserError, match=r"unknown steering site 'attn_out': use one of \('resid_post', 'mlp_out'\)"):
        with steer(tiny, tiny_sae(), feature=1, f_max=1.0, site="attn_out"):
            pass
    pre = tiny_sae(hook=f"blocks.{LAYER}.hook_resid_pre")
    with pytest.raises(UserError, match="site mlp_out .* blocks.L.hook_resid_pre: use site=resid_post"):
        with steer(tiny, pre, feature=1, f_max=1.0, mode="clamp", site="mlp_out"):
            pass
    assert not tiny.layers[LAYER]._forward_hooks and not tiny.layers[LAYER].mlp._forward_hooks


def test_the_evaluate_stage_passes_the_site_and_keys_cells_by_it(vocab_only, monkeypatch):
    """steering.site reaches the lm-eval model and the steered cells' keys (resid_post cells keep their old keys;
    unsteered cells do not depend on it); an unknown site fails before anything runs."""
    from reasoning_sae.lm_eval import model as lm_eval_model
    from reasoning_sae.stages import evaluate

    default, mlp = vocab_only(), vocab_only("steering.site=mlp_out", "steering.mode=clamp")
    clamp = vocab_only("steering.mode=clamp")
    grid_cells = evaluate.cells(default)
    contexts = {name: evaluate.Context(c, evaluate.inputs(c, grid_cells), grid_cells)
                for name, c in (("default", default), ("mlp", mlp), ("clamp", clamp))}
    for cell in grid_cells:
        keys = {name: evaluate.cell_dir(ctx.cfg, ctx, cell) for name, ctx in contexts.items()}
        if cell.features:
            assert "site" not in contexts["clamp"].key_context(cell)["steering"]
            assert contexts["mlp"].key_context(cell)["steering"]["site"] == "mlp_out"
            assert len(set(keys.values())) == 3
        else:
            assert len(set(keys.values())) == 1
    made = {}
    monkeypatch.setattr(lm_eval_model, "SteeredLM", lambda **kwargs: made.update(kwargs))
    monkeypatch.setattr(evaluate.Context, "lm", None)
    evaluate.model_for(contexts["mlp"], next(c for c in grid_cells if c.features))
    assert made["site"] == "mlp_out" and made["mode"] == "clamp"
    with pytest.raises(UserError, match=r"unknown steering site 'attn_out': use one of"):
        evaluate.run(vocab_only("steering.site=attn_out"))
