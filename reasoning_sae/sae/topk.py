"""`topk`: the k largest pre-activations per token (ReLU'd), with the AuxK loss that revives dead latents
(Gao et al. 2024, as SAELens and EleutherAI's sparsify implement it). The decoder runs as an embedding bag over
the k winners instead of a dense [batch, d_sae] product.

Training uses a hand-written backward (`_TopKLoss`, like sparsify's fused encoder): only the k winners per token
(and the AuxK winners) get a gradient, so the backward never touches a [batch, d_sae] tensor. The encoder and
decoder gradients are sparse-times-dense products over the winners (one CSR pattern [d_sae, batch] serves both),
the winners' gradients are per-token dot products with the decoder rows. The dense work left is the encoder GEMM,
the top-k itself and writing the dense latents the caller gets; large tensors come from the module's
`BufferPool` (see standard.py). `reference_loss` is the plain autograd version it is tested against."""

import warnings

import torch
import torch.nn.functional as F

from reasoning_sae.sae.base import SparseAutoencoder, TrainOutput
from reasoning_sae.sae.buffers import BufferPool, scratch_pool


def _sum_of_squares(t_BD: torch.Tensor) -> torch.Tensor:
    """sum(t**2) as per-row dot products (one batched GEMM, no temporary): as exact as pow(2).sum()."""
    return torch.bmm(t_BD.unsqueeze(1), t_BD.unsqueeze(2)).sum()


class _Winners:
    """The (token, latent) pairs of a top-k selection, as a CSR pattern [d_sae, batch] (rows sorted by latent)."""

    def __init__(self, idx_BK: torch.Tensor, d_sae: int):
        batch, k = idx_BK.shape
        self.idx_BK, self.d_sae, self.batch = idx_BK, d_sae, batch
        idx_E = idx_BK.reshape(-1)
        sorted_E, self.order_E = torch.sort(idx_E, stable=True)
        self.crow = torch.zeros(d_sae + 1, dtype=torch.long, device=idx_BK.device)
        torch.cumsum(torch.bincount(sorted_E, minlength=d_sae), 0, out=self.crow[1:])
        self.col = torch.div(self.order_E, k, rounding_mode="floor")  # the token of each winner

    def rows_times(self, vals_BK: torch.Tensor, rhs_BD: torch.Tensor, out_FD: torch.Tensor,
                   accumulate: bool = False) -> torch.Tensor:
        """out[f] (+)= sum over the tokens b that picked f of vals[b, f] * rhs[b]; `out` [d_sae, D]."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta state"
            S_FB = torch.sparse_csr_tensor(self.crow, self.col, vals_BK.reshape(-1)[self.order_E],
                                           (self.d_sae, self.batch), check_invariants=False)
            # into a given output: S @ rhs would zero-fill a fresh one and copy MKL's result over (twice the time)
            return torch.addmm(out_FD, S_FB, rhs_BD, beta=1 if accumulate else 0, out=out_FD)

    def dots(self, W_FD: torch.Tensor, rhs_BD: torch.Tensor) -> torch.Tensor:
        """[batch, k]: W[idx[b, j]] . rhs[b] (the gradient of per-sample weights of an embedding bag)."""
        batch, k = self.idx_BK.shape
        bags_E = torch.arange(batch, device=rhs_BD.device).repeat_interleave(k)
        offsets = torch.arange(0, batch * k, k, device=rhs_BD.device)
        return torch.ops.aten._embedding_bag_per_sample_weights_backward(
            rhs_BD.contiguous(), W_FD, self.idx_BK.reshape(-1), offsets, bags_E, 0, -1).view(batch, k)

    def bias_grad(self, vals_BK: torch.Tensor) -> torch.Tensor:
        return torch.zeros(self.d_sae, dtype=vals_BK.dtype, device=vals_BK.device).index_add_(
            0, self.idx_BK.reshape(-1), vals_BK.reshape(-1))


class _TopKLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_BD, W_enc, b_enc, W_dec, b_dec, k: int, apply_b_dec: bool, dead_mask_F, n_dead: int,
                aux_coefficient: float, pool: BufferPool):
        batch, d_in = x_BD.shape
        x_in_BD = torch.sub(x_BD, b_dec, out=pool.get("x_in", x_BD.shape, x_BD)) if apply_b_dec else x_BD
        # pre-activations exactly as encode_pre computes them (the same winners), in a reused buffer
        pre_BF = pool.get("pre", (batch, W_enc.shape[1]), x_BD)
        torch.mm(x_in_BD, W_enc, out=pre_BF)
        pre_BF += b_enc
        pre_BK, idx_BK = pre_BF.topk(k, dim=-1, sorted=False)
        vals_BK = pre_BK.relu()
        recon_BD = F.embedding_bag(idx_BK, W_dec, per_sample_weights=vals_BK, mode="sum")
        recon_BD += b_dec
        err_BD = torch.sub(recon_BD, x_BD, out=pool.get("err", x_BD.shape, x_BD))
        mse = _sum_of_squares(err_BD) / batch
        aux_idx_BK = aux_vals_BK = aux_err_BD = None
        aux = torch.zeros((), dtype=mse.dtype, device=mse.device)
        aux_scale = 0.0
        if n_dead > 0:
            # the top dead latents reconstruct the residual the live ones left (k_aux = d_in / 2)
            k_aux = min(d_in // 2, n_dead)
            aux_scale = aux_coefficient * min(n_dead / (d_in // 2), 1.0)
            pre_BF.masked_fill_(~dead_mask_F[None, :], -torch.inf)
            aux_vals_BK, aux_idx_BK = pre_BF.topk(k_aux, dim=-1, sorted=False)
            aux_err_BD = F.embedding_bag(aux_idx_BK, W_dec, per_sample_weights=aux_vals_BK, mode="sum")
            aux_err_BD += err_BD  # aux_recon - residual, residual = x - recon (detached)
            aux = aux_scale * _sum_of_squares(aux_err_BD) / batch
        feats_BF = pre_BF.zero_().scatter_(-1, idx_BK, vals_BK)  # the buffer is free now: the latents go there
        ctx.save_for_backward(x_in_BD, W_enc, W_dec, idx_BK, vals_BK, err_BD, aux_idx_BK, aux_vals_BK, aux_err_BD)
        ctx.apply_b_dec, ctx.aux_scale, ctx.pool = apply_b_dec, aux_scale, pool
        mse, aux = mse.detach(), aux.detach()
        ctx.mark_non_differentiable(mse, aux, feats_BF, recon_BD)
        ctx.set_materialize_grads(False)  # else autograd fills a zero [batch, d_sae] gradient for feats_BF
        return mse + aux, mse, aux, feats_BF, recon_BD

    @staticmethod
    def backward(ctx, grad_loss, *_unused):
        if grad_loss is None:  # backward through an output that has no gradient
            return (None,) * 11
        x_in_BD, W_enc, W_dec, idx_BK, vals_BK, err_BD, aux_idx_BK, aux_vals_BK, aux_err_BD = ctx.saved_tensors
        pool = ctx.pool
        batch, (d_sae, d_in) = err_BD.shape[0], W_dec.shape
        d_recon_BD = torch.mul(err_BD, 2 * grad_loss / batch, out=pool.get("d_recon", err_BD.shape, err_BD))
        grad_b_dec = d_recon_BD.sum(0)
        winners = _Winners(idx_BK, d_sae)
        grad_vals_BK = winners.dots(W_dec, d_recon_BD)
        grad_pre_BK = grad_vals_BK.masked_fill_(vals_BK <= 0, 0)  # ReLU (vals are ReLU'd winners)
        # the gradients live in pooled buffers: one comes back once the optimizer's zero_grad lets go of it
        grad_W_dec = winners.rows_times(vals_BK, d_recon_BD, pool.get("grad_W_dec", (d_sae, d_in), W_dec))
        grad_W_encT = winners.rows_times(grad_pre_BK, x_in_BD, pool.get("grad_W_encT", (d_sae, d_in), W_enc))
        grad_b_enc = winners.bias_grad(grad_pre_BK)
        if aux_idx_BK is not None:  # AuxK: its winners' raw pre-activations reconstruct the detached residual
            aux_winners = _Winners(aux_idx_BK, d_sae)
            d_aux_BD = aux_err_BD * (2 * ctx.aux_scale * grad_loss / batch)
            grad_aux_BK = aux_winners.dots(W_dec, d_aux_BD)
            aux_winners.rows_times(aux_vals_BK, d_aux_BD, grad_W_dec, accumulate=True)
            aux_winners.rows_times(grad_aux_BK, x_in_BD, grad_W_encT, accumulate=True)
            grad_b_enc += aux_winners.bias_grad(grad_aux_BK)
        grad_W_enc = pool.get("grad_W_enc", (d_in, d_sae), W_enc).copy_(grad_W_encT.T)
        del grad_W_encT
        if ctx.apply_b_dec:
            grad_b_dec -= W_enc @ grad_b_enc
        return None, grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec, None, None, None, None, None, None


class TopKSAE(SparseAutoencoder):
    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        vals_BK, idx_BK = pre_BF.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre_BF).scatter_(-1, idx_BK, vals_BK.relu())

    def decode_sparse(self, vals_BK: torch.Tensor, idx_BK: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(idx_BK, self.W_dec, per_sample_weights=vals_BK, mode="sum") + self.b_dec

    def training_loss(self, x_BD: torch.Tensor, dead_mask_F: torch.Tensor | None = None,
                      aux_coefficient: float = 1.0 / 32, **_) -> TrainOutput:
        """MSE summed over d_in, averaged over the batch, + aux_coefficient * AuxK when latents are dead."""
        n_dead = 0 if dead_mask_F is None else int(dead_mask_F.sum())
        loss, mse, aux, feats_BF, recon_BD = _TopKLoss.apply(
            x_BD.to(self.W_enc.dtype), self.W_enc, self.b_enc, self.W_dec, self.b_dec, self.cfg.k,
            self.cfg.apply_b_dec_to_input, dead_mask_F, n_dead, float(aux_coefficient), scratch_pool(self),
        )
        losses = {"mse_loss": mse}
        if n_dead > 0:
            losses["auxiliary_reconstruction_loss"] = aux
        return TrainOutput(loss, losses, feats_BF, recon_BD)

    def reference_loss(self, x_BD: torch.Tensor, dead_mask_F: torch.Tensor | None = None,
                       aux_coefficient: float = 1.0 / 32) -> TrainOutput:
        """The same loss in plain autograd, with dense latents (what `_TopKLoss` is tested against)."""
        x_BD = x_BD.to(self.W_enc.dtype)
        pre_BF = self.encode_pre(x_BD)
        vals_BK, idx_BK = pre_BF.topk(self.cfg.k, dim=-1, sorted=False)
        feats_BF = torch.zeros_like(pre_BF).scatter(-1, idx_BK, vals_BK.relu())
        recon_BD = self.decode(feats_BF)
        mse = (recon_BD - x_BD).pow(2).sum(-1).mean()
        losses, loss = {"mse_loss": mse.detach()}, mse
        if dead_mask_F is not None and (n_dead := int(dead_mask_F.sum())) > 0:
            k_aux = min(self.d_in // 2, n_dead)
            scale = min(n_dead / (self.d_in // 2), 1.0)
            residual_BD = (x_BD - recon_BD).detach()
            aux_vals_BK, aux_idx_BK = pre_BF.masked_fill(~dead_mask_F[None, :], -torch.inf).topk(k_aux, dim=-1)
            aux_recon_BD = torch.zeros_like(pre_BF).scatter(-1, aux_idx_BK, aux_vals_BK) @ self.W_dec
            aux = aux_coefficient * scale * (aux_recon_BD - residual_BD).pow(2).sum(-1).mean()
            losses["auxiliary_reconstruction_loss"] = aux.detach()
            loss = loss + aux
        return TrainOutput(loss, losses, feats_BF.detach(), recon_BD.detach())
