import pytest
import torch

from reasoning_sae import UserError
from reasoning_sae.sae import SAEConfig, SparseAutoencoder, initialize
from reasoning_sae.train.config import TrainConfig
from reasoning_sae.train.module import NonFiniteTraining, SAEModule, lr_factor


def test_lr_schedule_is_constant_then_decays_linearly_to_zero():
    factors = [lr_factor(s, total=100, warm_up=0, decay=20) for s in range(100)]
    assert factors[:80] == [1.0] * 80
    assert factors[80] == 1.0 and factors[90] == pytest.approx(0.5) and factors[99] == pytest.approx(0.05)
    assert lr_factor(0, 100, 10, 0) == pytest.approx(0.1) and lr_factor(9, 100, 10, 0) == 1.0


def _module(**overrides):
    cfg = TrainConfig(training_tokens=1000, batch_size_tokens=10, **overrides)
    sae = initialize(SparseAutoencoder(SAEConfig(d_in=8, d_sae=16)), "fixed", generator=torch.Generator().manual_seed(0))
    return SAEModule(sae, cfg)


def test_l1_warm_up_reaches_the_coefficient_after_five_percent():
    module = _module(l1_coefficient=5.0, l1_warm_up_fraction=0.05)
    assert module.l1_coefficient(0) == pytest.approx(1.0) and module.l1_coefficient(4) == 5.0
    assert module.l1_coefficient(50) == 5.0


def test_export_folds_the_input_scaling():
    module = _module()
    module.scaling_factor.fill_(3.0)
    with torch.no_grad():
        module.sae.b_enc.normal_()
        module.sae.b_dec.normal_()
    x = torch.randn(5, 8)
    exported, stats = module.export({"hook_name": "blocks.0.hook_resid_post"})
    torch.testing.assert_close(exported.encode(x), module.sae.encode(3 * x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(exported(x), module.sae(3 * x) / 3, atol=1e-5, rtol=1e-5)
    assert exported.cfg.metadata["activation_scaling_factor"] == 3.0 and set(stats) == {"sparsity", "max_activation"}


def test_feature_statistics():
    module = _module()
    feats = torch.tensor([[0.0] * 15 + [2.0], [1.0] + [0.0] * 14 + [3.0]])
    module._update_feature_stats(feats)
    assert module.max_act_F[15] == 3.0 and module.max_act_F[0] == 1.0
    assert module.steps_since_fired_F.tolist() == [0] + [1] * 14 + [0]
    assert int(module.tokens_seen) == 2 and module.total_fired_F[15] == 2


def test_non_finite_activations_stop_with_the_step_number_and_claim_no_checkpoint():
    module = _module()
    with pytest.raises(NonFiniteTraining, match=r"^non-finite activations \(NaN/inf\) in the batch of step 0, from "
                                                r"the model at this layer: .*set model.dtype=float32\) and train "
                                                r"again$"):
        module.training_step(torch.full((10, 8), float("nan")), 0)


def test_a_non_finite_loss_stops_with_the_step_and_the_lr_and_claims_no_checkpoint():
    module = _module(lr=1e-3)
    module.scaling_factor.fill_(float("inf"))
    with pytest.raises(NonFiniteTraining, match=r"^the SAE loss became non-finite at step 0: lower sae.lr \(now "
                                                r"0.001\) and train again$") as err:
        module.training_step(torch.ones(10, 8), 0)
    assert err.value.step == 0 and isinstance(err.value, UserError)


def test_dead_latents_in_the_window_and_in_the_whole_run():
    module = _module(dead_feature_window=2)
    fires_0 = torch.tensor([[1.0] + [0.0] * 15])
    fires_1 = torch.tensor([[0.0, 1.0] + [0.0] * 14])
    for feats in (fires_0, fires_1, fires_1):
        module._update_feature_stats(feats)
    # latent 0 last fired 2 steps ago (dead in a 2-step window) but did fire; 2..15 never fired
    assert module.dead_mask_F().tolist() == [True, False] + [True] * 14
    assert module.dead_mask_F(whole_run=True).tolist() == [False, False] + [True] * 14
    # the whole-run count is the one read off the exported log10 densities (fired on no token: 1e-10 floor)
    _, stats = module.export()
    assert int(module.dead_mask_F(whole_run=True).sum()) == int((stats["sparsity"] <= -10 + 1e-6).sum()) == 14


def test_explained_variance_flavours():
    from reasoning_sae.train.quality import (
        explained_variance_per_dim,
        explained_variance_per_token,
        explained_variance_pooled,
    )

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g) * torch.tensor([10.0] + [1.0] * 7)  # one dominant dimension
    recon = x + torch.randn(64, 8, generator=g) * 0.5
    err = (recon - x).pow(2)
    var = (x - x.mean(0)).pow(2)
    per_token = explained_variance_per_token(x, recon)
    assert per_token.shape == () and float(per_token) == pytest.approx(float((1 - err.sum(-1) / var.sum(-1)).mean()))
    pooled = explained_variance_pooled(float(err.sum()), float(var.sum()))
    assert pooled == pytest.approx(1 - float(err.sum()) / float(var.sum()))
    per_dim = explained_variance_per_dim(err.sum(0), var.sum(0))
    assert per_dim == pytest.approx(float((1 - err.sum(0) / var.sum(0)).mean()))
    assert pooled > per_dim  # the dominant dimension, reconstructed as well as the others, lifts the pooled kind
    assert float(explained_variance_per_token(x, x)) == 1.0 and explained_variance_pooled(0.0, 5.0) == 1.0


@pytest.mark.parametrize(("architecture", "extra"), [
    ("jumprelu", {"jumprelu_init_threshold": 0.05, "pre_act_loss_coefficient": 1e-3}),
    ("batchtopk", {"k": 3}),
    ("matryoshka_batchtopk", {"k": 3, "matryoshka_widths": [4, 16], "use_matryoshka_aux_loss": True}),
])
def test_a_tiny_fit_of_each_sae_lens_architecture(tmp_path, architecture, extra):
    """SAEModule trains the architecture end to end (the train stage's path): finite losses, parameters moved, the
    exported SAE saves and loads as the jumprelu SAE SAELens would write."""
    import lightning as L

    from reasoning_sae.train.build import build_sae

    cfg = TrainConfig(architecture=architecture, init="fixed", d_sae=16, training_tokens=400, batch_size_tokens=20,
                      lr=1e-2, normalize_activations="none", dead_feature_window=2, log_every=5, **extra)
    module = SAEModule(build_sae(cfg, 8, {"hook_name": "blocks.0.hook_resid_post"}), cfg)
    assert module.sae.cfg.d_sae == 16 and module.sae.cfg.architecture == architecture
    before = module.sae.W_enc.detach().clone()
    data = torch.utils.data.DataLoader(torch.randn(400, 8, generator=torch.Generator().manual_seed(0)), batch_size=20)
    logged = []
    module.log_dict = lambda metrics, **_: logged.append(metrics)
    L.Trainer(max_steps=cfg.total_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, default_root_dir=tmp_path).fit(module, data)
    assert not torch.equal(module.sae.W_enc, before)
    assert len(logged) == cfg.total_steps // cfg.log_every
    # batchtopk and matryoshka log their running threshold, as SAELens does
    assert ("metrics/topk_threshold" in logged[-1]) == (architecture != "jumprelu")
    if architecture != "jumprelu":
        assert logged[-1]["metrics/topk_threshold"] == pytest.approx(float(module.sae.topk_threshold))
    if architecture == "jumprelu":
        assert not torch.equal(module.sae.threshold, torch.full((16,), 0.05))
    else:
        assert module.sae.topk_threshold > 0
    exported, stats = module.export()
    exported.save(tmp_path / "sae", stats)
    loaded = SparseAutoencoder.load(tmp_path / "sae")
    assert loaded.cfg.architecture == "jumprelu"
    x = torch.randn(5, 8)
    torch.testing.assert_close(loaded.encode(x), exported.encode(x))


def test_the_jumprelu_l0_coefficient_warms_up():
    module = _module(l0_coefficient=2.0, l0_warm_up_fraction=0.1)
    assert module.l0_coefficient(0) == pytest.approx(0.2) and module.l0_coefficient(9) == 2.0
