"""`matryoshka_batchtopk`: a batchtopk SAE whose nested prefixes of latents (`matryoshka_widths`, the last = d_sae)
each reconstruct the input on their own (Bussmann et al. 2025, arXiv 2503.17547), as SAELens 6.54 trains it
(sae_lens/saes/matryoshka_batchtopk_sae.py, MatryoshkaBatchTopKTrainingSAE, rescale_acts_by_decoder_norm=False): one
`inner_mse_loss_<width>` per prefix but the last (whose loss is the whole SAE's `mse_loss`), AuxK over the whole SAE or,
with `use_matryoshka_aux_loss`, per level. Saved, like batchtopk, as a jumprelu SAE."""

import torch

from reasoning_sae.sae.batchtopk import BatchTopKSAE, auxk_loss


class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    def prefix_decodes(self, feats_BF: torch.Tensor, include_outer: bool = False):
        """(width, b_dec + the decode of latents [0, width)) for each level (SAELens' _iterable_decode)."""
        widths = self.cfg.matryoshka_widths if include_outer else self.cfg.matryoshka_widths[:-1]
        decoded_BD, start = self.b_dec, 0
        for width in widths:
            decoded_BD = feats_BF[:, start:width] @ self.W_dec[start:width] + decoded_BD
            start = width
            yield width, decoded_BD

    def more_losses(self, x_BD, recon_BD, pre_BF, feats_BF, dead_mask_F, aux_coefficient: float,
                    use_matryoshka_aux_loss: bool = False, **_) -> dict[str, torch.Tensor]:
        if use_matryoshka_aux_loss:
            aux = self.matryoshka_auxk_loss(x_BD, pre_BF, feats_BF, dead_mask_F)
        else:
            aux = auxk_loss(x_BD, recon_BD, pre_BF, self.W_dec, dead_mask_F)
        losses = {"auxiliary_reconstruction_loss": aux_coefficient * aux}
        for width, inner_BD in self.prefix_decodes(feats_BF):  # the outer level is mse_loss itself
            losses[f"inner_mse_loss_{width}"] = (inner_BD - x_BD).pow(2).sum(-1).mean()
        return losses

    def matryoshka_auxk_loss(self, x_BD, pre_BF, feats_BF, dead_mask_F) -> torch.Tensor:
        """AuxK per level: each level's dead latents fit the residual of the levels up to it (SAELens'
        calculate_matryoshka_aux_loss)."""
        if dead_mask_F is None or int(dead_mask_F.sum()) == 0:
            return x_BD.new_tensor(0.0)
        start, parts = 0, []
        for width, partial_BD in self.prefix_decodes(feats_BF, include_outer=True):
            parts.append(auxk_loss(x_BD, partial_BD, pre_BF[:, start:width], self.W_dec[start:width],
                                   dead_mask_F[start:width]))
            start = width
        return torch.stack(parts).sum()
