"""`jumprelu`: f_i = pre_i * [pre_i > threshold_i] with a learnt threshold per latent (Rajamanoharan et al. 2024), as
SAELens 6.54 trains it (sae_lens/saes/jumprelu_sae.py, JumpReLUTrainingSAE): the threshold is a parameter kept in
float32 and projected to >= 0 before each step (SAELens dropped DeepMind's log_threshold, issue #494; a
`log_threshold` in a loaded file is not read), the step function gets straight-through gradients with a rectangle
kernel of width `jumprelu_bandwidth`, and the sparsity loss is `l0_loss` in SAELens' three modes (step: L0, DeepMind;
tanh: Anthropic; quadratic: around target_l0, Gemma Scope 2), plus Anthropic's `pre_act_loss` on dead latents when
its coefficient is set (SAELens: off by default). The decoder norm enters only the tanh and pre-act losses, as in
SAELens. Saved with a `threshold` tensor in sae_weights.safetensors, as SAELens' JumpReLUSAE reads it."""

import torch
from torch import nn

from reasoning_sae.sae.base import SparseAutoencoder, TrainOutput
from reasoning_sae.sae.config import SAEConfig

SPARSITY_MODES = ("step", "tanh", "quadratic")


def _rectangle(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x < 0.5)).to(x)


class _Step(torch.autograd.Function):
    """[x > threshold], with SAELens' straight-through estimator (jumprelu_sae.py, Step)."""

    @staticmethod
    def forward(ctx, x, threshold, bandwidth: float, ste_to_input: bool):
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth, ctx.ste_to_input = bandwidth, ste_to_input
        return (x > threshold).to(x)

    @staticmethod
    def backward(ctx, grad_output):
        x, threshold = ctx.saved_tensors
        ste = (1.0 / ctx.bandwidth) * _rectangle((x - threshold) / ctx.bandwidth) * grad_output
        return (ste if ctx.ste_to_input else None), torch.sum(-ste, dim=0), None, None


class _JumpReLU(torch.autograd.Function):
    """x * [x > threshold], with SAELens' straight-through estimator for the threshold (jumprelu_sae.py, JumpReLU)."""

    @staticmethod
    def forward(ctx, x, threshold, bandwidth: float, ste_to_input: bool):
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth, ctx.ste_to_input = bandwidth, ste_to_input
        return (x * (x > threshold)).to(x)

    @staticmethod
    def backward(ctx, grad_output):
        x, threshold = ctx.saved_tensors
        ste = (threshold / ctx.bandwidth) * _rectangle((x - threshold) / ctx.bandwidth) * grad_output
        grad_x = (x > threshold) * grad_output
        if ctx.ste_to_input:
            grad_x = grad_x + ste
        return grad_x, torch.sum(-ste, dim=0), None, None


def jumprelu(pre_BF: torch.Tensor, threshold_F: torch.Tensor) -> torch.Tensor:
    """SAELens' inference JumpReLU: relu(pre) where pre > threshold, else 0."""
    return torch.relu(pre_BF) * (pre_BF > threshold_F).to(pre_BF.dtype)


class JumpReLUSAE(SparseAutoencoder):
    def __init__(self, cfg: SAEConfig, device: str | torch.device = "cpu"):
        super().__init__(cfg, device)
        # float32 whatever the SAE dtype, as SAELens trains it: Adam's small steps round away in bfloat16
        self.threshold = nn.Parameter(torch.zeros(cfg.d_sae, dtype=torch.float32, device=device))

    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        return jumprelu(pre_BF, self.threshold.to(pre_BF.dtype))

    def latent_thresholds(self, idx_G: torch.Tensor) -> torch.Tensor:
        return self.threshold[idx_G.to(self.threshold.device)]

    def training_loss(self, x_BD: torch.Tensor, **settings) -> TrainOutput:
        """`reference_loss` after SAELens' projection of the threshold to >= 0 (JumpReLUTrainingSAE.
        training_forward_pass)."""
        with torch.no_grad():
            self.threshold.clamp_(min=0.0)
        return self.reference_loss(x_BD, **settings)

    def reference_loss(self, x_BD: torch.Tensor, l0_coefficient: float = 1.0, dead_mask_F: torch.Tensor | None = None,
                       jumprelu_bandwidth: float = 0.05, jumprelu_sparsity_loss_mode: str = "step",
                       jumprelu_tanh_scale: float = 4.0, jumprelu_ste_to_input: bool = False,
                       pre_act_loss_coefficient: float | None = None, target_l0: float | None = None,
                       **_) -> TrainOutput:
        """MSE summed over d_in + l0_loss (+ pre_act_loss), each averaged over the batch, as SAELens'
        JumpReLUTrainingSAE.training_forward_pass computes them."""
        x_BD = x_BD.to(self.W_enc.dtype)
        pre_BF = self.encode_pre(x_BD)
        threshold_F = self.threshold.to(pre_BF.dtype)
        feats_BF = _JumpReLU.apply(pre_BF, threshold_F, jumprelu_bandwidth, jumprelu_ste_to_input)
        recon_BD = self.decode(feats_BF)
        mse = (recon_BD - x_BD).pow(2).sum(-1).mean()
        W_dec_norm_F = self.W_dec.norm(dim=1)
        if jumprelu_sparsity_loss_mode in ("step", "quadratic"):
            l0_B = _Step.apply(pre_BF, threshold_F, jumprelu_bandwidth, jumprelu_ste_to_input).sum(-1)
            if jumprelu_sparsity_loss_mode == "quadratic":
                if target_l0 is None:
                    raise ValueError("jumprelu_sparsity_loss_mode=quadratic needs target_l0")
                l0_B = 2 / target_l0 * (l0_B - target_l0) ** 2
        elif jumprelu_sparsity_loss_mode == "tanh":
            l0_B = torch.tanh(jumprelu_tanh_scale * feats_BF * W_dec_norm_F).sum(-1)
        else:
            raise ValueError(f"unknown jumprelu_sparsity_loss_mode {jumprelu_sparsity_loss_mode!r}")
        losses = {"mse_loss": mse, "l0_loss": (l0_coefficient * l0_B).mean()}
        if pre_act_loss_coefficient is not None:
            # Anthropic's pre-activation loss, on the dead latents only (SAELens' calculate_pre_act_loss)
            if dead_mask_F is None or not dead_mask_F.any():
                losses["pre_act_loss"] = pre_BF.new_tensor(0.0)
            else:
                per_token_B = ((threshold_F - pre_BF).relu() * dead_mask_F * W_dec_norm_F).sum(-1)
                losses["pre_act_loss"] = pre_act_loss_coefficient * per_token_B.mean()
        loss = sum(losses.values())
        return TrainOutput(loss, {k: v.detach() for k, v in losses.items()}, feats_BF.detach(), recon_BD.detach())

    @torch.no_grad()
    def _fold_decoder_norm(self) -> torch.Tensor:
        # the threshold scales with the pre-activations, so the same latents stay active (SAELens' fold_W_dec_norm)
        norms_F = super()._fold_decoder_norm()
        self.threshold.mul_(norms_F.to(self.threshold.dtype))
        return norms_F

    def saved_form(self) -> tuple[SAEConfig, dict[str, torch.Tensor]]:
        cfg, tensors = super().saved_form()
        return cfg, {**tensors, "threshold": self.threshold}

    def load_extra(self, weights: dict[str, torch.Tensor], corrupt) -> None:
        threshold_F = weights.get("threshold")
        if threshold_F is None:
            raise corrupt("no tensor threshold in sae_weights.safetensors (a jumprelu SAE needs one)")
        if tuple(threshold_F.shape) != (self.d_sae,):
            raise corrupt(f"threshold of shape {tuple(threshold_F.shape)} where cfg.json implies ({self.d_sae},)")
        # 0 is a threshold SAELens training reaches (it projects to >= 0): that latent is a plain ReLU
        if not (torch.isfinite(threshold_F).all() and (threshold_F >= 0).all()):
            raise corrupt("a negative or non-finite JumpReLU threshold (it must be >= 0)")
        self.threshold.data = threshold_F.to(torch.float32)
