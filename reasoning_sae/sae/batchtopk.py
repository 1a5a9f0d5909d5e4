"""`batchtopk`: in training, the k * batch largest ReLU'd pre-activations of the whole batch (Bussmann et al. 2024),
with the AuxK loss for dead latents, as SAELens 6.54 trains it (sae_lens/saes/batchtopk_sae.py,
BatchTopKTrainingSAE, with rescale_acts_by_decoder_norm=False: the only form supported here, as for topk). Each step
moves a running threshold towards the smallest kept activation (rate `topk_threshold_lr`); outside training, `encode`
is a JumpReLU with that threshold, and `save` writes the SAE as SAELens' save_inference_model does: a `jumprelu` SAE
whose `threshold` tensor holds the running threshold for every latent."""

import torch

from reasoning_sae.sae.base import SparseAutoencoder, TrainOutput
from reasoning_sae.sae.config import SAEConfig
from reasoning_sae.sae.jumprelu import jumprelu


def batch_topk(pre_BF: torch.Tensor, k: int) -> torch.Tensor:
    """The int(k * tokens) largest ReLU'd pre-activations of the whole batch, zeros elsewhere (SAELens' BatchTopK)."""
    acts_BF = pre_BF.relu()
    flat_N = acts_BF.flatten()
    top = torch.topk(flat_N, int(k * acts_BF.shape[:-1].numel()), dim=-1)
    return torch.zeros_like(flat_N).scatter(-1, top.indices, top.values).reshape(acts_BF.shape)


def auxk_loss(x_BD: torch.Tensor, recon_BD: torch.Tensor, pre_BF: torch.Tensor, W_dec_FD: torch.Tensor,
              dead_mask_F: torch.Tensor | None) -> torch.Tensor:
    """AuxK before its coefficient (SAELens' calculate_topk_aux_loss): the top min(d_in / 2, n_dead) dead
    pre-activations, decoded without b_dec, fit the detached residual, scaled by min(n_dead / (d_in / 2), 1)."""
    if dead_mask_F is None or (n_dead := int(dead_mask_F.sum())) == 0:
        return recon_BD.new_tensor(0.0)
    k_aux = x_BD.shape[-1] // 2
    scale = min(n_dead / k_aux, 1.0)
    residual_BD = (x_BD - recon_BD).detach()
    aux_vals_BK, aux_idx_BK = pre_BF.masked_fill(~dead_mask_F[None, :], -torch.inf).topk(min(k_aux, n_dead),
                                                                                        sorted=False)
    aux_recon_BD = torch.zeros_like(pre_BF).scatter(-1, aux_idx_BK, aux_vals_BK) @ W_dec_FD
    return scale * (aux_recon_BD - residual_BD).pow(2).sum(-1).mean()


class BatchTopKSAE(SparseAutoencoder):
    def __init__(self, cfg: SAEConfig, device: str | torch.device = "cpu"):
        super().__init__(cfg, device)
        # double, as SAELens keeps it: a float32 running average stalls on small updates
        self.register_buffer("topk_threshold", torch.tensor(0.0, dtype=torch.double, device=device))

    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        """The inference form: JumpReLU at the running threshold (what the saved jumprelu SAE computes)."""
        return jumprelu(pre_BF, self.topk_threshold.to(pre_BF.dtype))

    def latent_thresholds(self, idx_G: torch.Tensor) -> torch.Tensor:
        return self.topk_threshold.expand(len(idx_G))  # the inference JumpReLU's one threshold

    def training_loss(self, x_BD: torch.Tensor, topk_threshold_lr: float = 0.01, **settings) -> TrainOutput:
        """`reference_loss`, then the threshold update of SAELens' BatchTopKTrainingSAE.training_forward_pass."""
        out = self.reference_loss(x_BD, **settings)
        self.update_threshold(out.feats_BF, topk_threshold_lr)
        return out

    @torch.no_grad()
    def update_threshold(self, feats_BF: torch.Tensor, lr: float) -> None:
        positive = feats_BF > 0
        if positive.any():
            smallest = feats_BF[positive].min().to(self.topk_threshold.dtype)
            self.topk_threshold.copy_((1 - lr) * self.topk_threshold + lr * smallest)

    def reference_loss(self, x_BD: torch.Tensor, dead_mask_F: torch.Tensor | None = None,
                       aux_coefficient: float = 1.0, **_) -> TrainOutput:
        """MSE summed over d_in, averaged over the batch, + aux_coefficient * AuxK (0 without dead latents)."""
        x_BD = x_BD.to(self.W_enc.dtype)
        pre_BF = self.encode_pre(x_BD)
        feats_BF = batch_topk(pre_BF, self.cfg.k)
        recon_BD = self.decode(feats_BF)
        losses = {"mse_loss": (recon_BD - x_BD).pow(2).sum(-1).mean()}
        losses.update(self.more_losses(x_BD, recon_BD, pre_BF, feats_BF, dead_mask_F, aux_coefficient, **_))
        loss = sum(losses.values())
        return TrainOutput(loss, {k: v.detach() for k, v in losses.items()}, feats_BF.detach(), recon_BD.detach())

    def more_losses(self, x_BD, recon_BD, pre_BF, feats_BF, dead_mask_F, aux_coefficient: float,
                    **_) -> dict[str, torch.Tensor]:
        """The loss parts after mse_loss, in SAELens' order (the total adds them in it)."""
        return {"auxiliary_reconstruction_loss": aux_coefficient * auxk_loss(x_BD, recon_BD, pre_BF, self.W_dec,
                                                                             dead_mask_F)}

    def saved_form(self) -> tuple[SAEConfig, dict[str, torch.Tensor]]:
        """As SAELens' save_inference_model: a jumprelu SAE, the threshold repeated for every latent, the training
        architecture in the metadata."""
        cfg, tensors = super().saved_form()
        details = {"k": cfg.k, **({"matryoshka_widths": cfg.matryoshka_widths} if cfg.matryoshka_widths else {})}
        metadata = {**cfg.metadata, "training_architecture": cfg.architecture, "training_architecture_details": details}
        threshold_F = torch.ones_like(self.b_enc).detach() * self.topk_threshold.item()
        return (cfg.replace(architecture="jumprelu", k=None, matryoshka_widths=None, metadata=metadata),
                {**tensors, "threshold": threshold_F})
