"""The LM passes of the falsification: activations of the chosen features only, and their mean over a window."""

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from reasoning_sae.diff.activations import ELEMENTWISE
from reasoning_sae.sae import SparseAutoencoder


def feature_encoder(sae: SparseAutoencoder, features: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """x [..., d_in] -> the activations [..., G] of `features`, equal to `sae.encode(x)[..., features]`: the encoder's
    columns only where the activation acts per latent (ReLU), the full encode where it does not (TopK ranks all)."""
    ids = torch.as_tensor(list(features), dtype=torch.long, device=sae.W_enc.device)
    if sae.cfg.architecture not in ELEMENTWISE:
        return lambda x: sae.encode(x.to(sae.W_enc.dtype))[..., ids]
    W_DG, b_G = sae.W_enc[:, ids].detach().clone(), sae.b_enc[ids].detach().clone()
    b_dec = sae.b_dec.detach().clone() if sae.cfg.apply_b_dec_to_input else None

    def encode(x: torch.Tensor) -> torch.Tensor:
        x = x.to(W_DG.dtype)
        return sae.activation((x - b_dec if b_dec is not None else x) @ W_DG + b_G)

    return encode


def window_means(feats_BSG: torch.Tensor, keep_BS: torch.Tensor, row_N: torch.Tensor, pos_N: torch.Tensor,
                 window: tuple[int, int]) -> torch.Tensor:
    """[N, G]: each feature's mean activation over the kept positions within `window` (before, after) of each site
    (row, position); NaN where the window holds no kept position."""
    before, after = window
    seq = feats_BSG.shape[1]
    sums_BSG = F.pad((feats_BSG.double() * keep_BS[..., None]).cumsum(1), (0, 0, 1, 0))
    counts_BS = F.pad(keep_BS.double().cumsum(1), (1, 0))
    lo, hi = (pos_N - before).clamp(min=0), (pos_N + after + 1).clamp(max=seq)
    sums_NG = sums_BSG[row_N, hi] - sums_BSG[row_N, lo]
    counts_N = counts_BS[row_N, hi] - counts_BS[row_N, lo]
    return (sums_NG / counts_N[:, None]).float()


@torch.inference_mode()
def encoded(lm, encode: Callable[[torch.Tensor], torch.Tensor], ids_TS, hook: str, batch_sequences: int,
            ignore_token_ids: Sequence[int] = (), sink_positions: int = 0,
            progress: str | None = None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(first row, ids [B, S], keep [B, S], the features' activations [B, S, G]) per batch of `ids_TS`: one LM pass
    (lm.iter_activations) and the features' encode."""
    for batch in lm.iter_activations(ids_TS, hook, batch_sequences, ignore_token_ids, sink_positions, progress):
        yield batch.start, batch.ids_BS, batch.keep_BS, encode(batch.acts)
