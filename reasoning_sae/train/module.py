"""The LightningModule that trains one SAE: loss, lambda warm-up, LR schedule, feature statistics, metrics
named as SAELens logs them, and the export of a finished SAE (input scaling folded into the weights)."""

import copy
import math

import lightning as L
import torch

from reasoning_sae.errors import UserError
from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.train.config import TrainConfig
from reasoning_sae.train.quality import explained_variance_per_token


def lr_factor(step: int, total: int, warm_up: int, decay: int) -> float:
    """Linear warm-up, constant, then linear decay to 0 over the last `decay` steps (SAELens' constant
    scheduler with lr_warm_up_steps and lr_decay_steps)."""
    if warm_up and step < warm_up:
        return (step + 1) / warm_up
    if decay and step >= total - decay:
        return max(0.0, (total - step) / decay)
    return 1.0


class NonFiniteTraining(UserError):
    """Training met NaN/inf at `step` and stopped. The message names the cause and the fix; the stage that ran the
    fit adds what of the run is kept (a checkpoint, or nothing)."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class SAEModule(L.LightningModule):
    def __init__(self, sae: SparseAutoencoder, cfg: TrainConfig):
        super().__init__()
        self.sae, self.cfg = sae, cfg
        d_sae = sae.d_sae
        self.register_buffer("scaling_factor", torch.zeros(()))  # 0 until estimated from the first buffer fill
        self.register_buffer("steps_since_fired_F", torch.zeros(d_sae, dtype=torch.long))
        self.register_buffer("window_fired_F", torch.zeros(d_sae))
        self.register_buffer("window_tokens", torch.zeros((), dtype=torch.long))
        self.register_buffer("total_fired_F", torch.zeros(d_sae))
        self.register_buffer("max_act_F", torch.zeros(d_sae))
        self.register_buffer("tokens_seen", torch.zeros((), dtype=torch.long))

    # --- schedule ----------------------------------------------------------------------------------------------
    def l1_coefficient(self, step: int) -> float:
        warm = int(self.cfg.l1_warm_up_fraction * self.cfg.total_steps)
        return self.cfg.l1_coefficient * (min(1.0, (step + 1) / warm) if warm else 1.0)

    def l0_coefficient(self, step: int) -> float:
        """jumprelu's sparsity coefficient, warmed up as SAELens' TrainCoefficientConfig does over l0_warm_up_steps."""
        warm = int(self.cfg.l0_warm_up_fraction * self.cfg.total_steps)
        return self.cfg.l0_coefficient * (min(1.0, (step + 1) / warm) if warm else 1.0)

    def configure_optimizers(self):
        total = self.cfg.total_steps
        warm, decay = int(self.cfg.lr_warm_up_fraction * total), int(self.cfg.lr_decay_fraction * total)
        # fused: one kernel over all parameters (on a loaded 2-core CPU the for-loop Adam costs ~14% of a step)
        optimizer = torch.optim.Adam(self.sae.parameters(), lr=self.cfg.lr,
                                     betas=(self.cfg.adam_beta1, self.cfg.adam_beta2), fused=True)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warm, decay))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- input scaling -----------------------------------------------------------------------------------------
    @property
    def needs_input_scale(self) -> bool:
        """Whether inputs are to be scaled and the scale is not set yet (a resumed run restores it)."""
        return self.cfg.normalize_activations != "none" and not self.scaling_factor > 0

    def set_input_scale(self, mean_norm: float) -> None:
        """Scale inputs whose mean L2 norm is `mean_norm` to a mean norm of sqrt(d_in)."""
        self.scaling_factor.fill_(math.sqrt(self.sae.d_in) / mean_norm)
        if self.cfg.init_from:  # a saved SAE reads raw activations: make it read the scaled ones (same function)
            self.sae.fold_input_scaling(1 / float(self.scaling_factor))

    def on_fit_start(self) -> None:
        if self.needs_input_scale:
            raise UserError(f"sae.normalize_activations={self.cfg.normalize_activations} needs the input scale before "
                            f"training: fit with train.callbacks.BufferLink and a BufferDataModule, call "
                            f"set_input_scale(mean_norm) first, or set sae.normalize_activations=none")

    def scale(self, x_BD: torch.Tensor) -> torch.Tensor:
        x_BD = x_BD.to(self.sae.W_enc.dtype)
        return x_BD * self.scaling_factor if self.cfg.normalize_activations != "none" else x_BD

    # --- training ----------------------------------------------------------------------------------------------
    def training_step(self, batch_BD: torch.Tensor, batch_idx: int) -> torch.Tensor:
        step = self.global_step
        if not torch.isfinite(batch_BD).all():
            raise NonFiniteTraining(
                f"non-finite activations (NaN/inf) in the batch of step {step}, from the model at this layer: run "
                f"it in float32 (set model.dtype=float32) and train again", step)
        x_BD = self.scale(batch_BD)
        out = self.sae.training_loss(x_BD, l1_coefficient=self.l1_coefficient(step), dead_mask_F=self.dead_mask_F(),
                                     aux_coefficient=self.cfg.aux_coefficient, l0_coefficient=self.l0_coefficient(step),
                                     **self.cfg.loss_settings())
        if not torch.isfinite(out.loss):
            raise NonFiniteTraining(f"the SAE loss became non-finite at step {step}: lower sae.lr (now "
                                    f"{self.cfg.lr:g}) and train again", step)
        self._update_feature_stats(out.feats_BF)
        # As SAELens: the metrics of the step that ends each log_every (Lightning writes its row under that
        # step's number), then the density window restarts after each feature_sampling_window steps.
        if (step + 1) % self.cfg.log_every == 0:
            self.log_dict(self._metrics(x_BD, out, step), on_step=True, prog_bar=False)
        if (step + 1) % self.cfg.feature_sampling_window == 0:
            self.window_fired_F.zero_()
            self.window_tokens.zero_()
        return out.loss

    @torch.no_grad()
    def _update_feature_stats(self, feats_BF: torch.Tensor) -> None:
        # Under DDP the statistics are of the global batch, identical on every rank: DDP broadcasts rank 0's
        # buffers before each step anyway, and rank 0 alone exports the SAE and writes checkpoints.
        fired_F = (feats_BF > 0).sum(0).float()
        max_F = feats_BF.max(0).values
        n_tokens = torch.tensor(feats_BF.shape[0], device=feats_BF.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for tensor, op in ((fired_F, "SUM"), (max_F, "MAX"), (n_tokens, "SUM")):
                torch.distributed.all_reduce(tensor, op=getattr(torch.distributed.ReduceOp, op))
        self.steps_since_fired_F += 1
        self.steps_since_fired_F[fired_F > 0] = 0
        self.window_fired_F += fired_F
        self.total_fired_F += fired_F
        self.window_tokens += n_tokens
        self.tokens_seen += n_tokens
        torch.maximum(self.max_act_F, max_F, out=self.max_act_F)

    @torch.no_grad()
    def dead_mask_F(self, whole_run: bool = False) -> torch.Tensor:
        """The dead latents [d_sae] (bool): those that fired on no token in the last sae.dead_feature_window steps
        (SAELens' dead features: the AuxK loss revives them, the training log counts them), or with `whole_run`
        on no token of the whole run (the count the train stage reports with the finished SAE)."""
        if whole_run:
            return self.total_fired_F == 0
        return self.steps_since_fired_F >= self.cfg.dead_feature_window

    @torch.no_grad()
    def _metrics(self, x_BD, out, step: int) -> dict[str, float]:
        density_F = self.window_fired_F / self.window_tokens.clamp(min=1)
        metrics = {f"losses/{k}": v for k, v in out.losses.items()}
        metrics.update({
            "losses/overall_loss": out.loss.detach(),
            "metrics/explained_variance": explained_variance_per_token(x_BD, out.recon_BD),
            "metrics/l0": (out.feats_BF > 0).float().sum(-1).mean(),
            "sparsity/dead_features": self.dead_mask_F().sum().float(),
            "sparsity/below_1e-5": (density_F < 1e-5).sum().float(),
            "sparsity/below_1e-6": (density_F < 1e-6).sum().float(),
            "details/current_learning_rate": self.optimizers().param_groups[0]["lr"],
            "details/current_l1_coefficient": self.l1_coefficient(step),
            "details/n_training_tokens": self.tokens_seen.float(),
        })
        if hasattr(self.sae, "topk_threshold"):  # batchtopk's running inference threshold, as SAELens logs it
            metrics["metrics/topk_threshold"] = self.sae.topk_threshold
        return {k: float(v) for k, v in metrics.items()}

    # --- export ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def export(self, metadata: dict | None = None) -> tuple[SparseAutoencoder, dict[str, torch.Tensor]]:
        """A copy of the SAE that reads raw activations (input scaling folded in) and its feature statistics."""
        sae = copy.deepcopy(self.sae).cpu()
        if self.cfg.normalize_activations != "none":
            sae.fold_input_scaling(float(self.scaling_factor))
        sae.cfg = sae.cfg.replace(metadata={**sae.cfg.metadata, **(metadata or {}),
                                            "tokens_seen": int(self.tokens_seen),
                                            "normalize_activations_trained": self.cfg.normalize_activations,
                                            "activation_scaling_factor": float(self.scaling_factor)})
        density_F = self.total_fired_F / self.tokens_seen.clamp(min=1)
        stats = {"sparsity": torch.log10(density_F + 1e-10).cpu(), "max_activation": self.max_act_F.cpu()}
        return sae, stats
