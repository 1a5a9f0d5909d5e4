"""LM passes for the diff stage: activations of several hooks for training, and the matching score's sums
(Eq. 9) of matched feature pairs across layers. Each is one forward pass per batch reading every hook at once."""

from typing import NamedTuple

import numpy as np
import torch

from reasoning_sae.sae import SparseAutoencoder

ELEMENTWISE = ("standard",)  # architectures whose activation acts per latent: a feature subset is a column slice


class PairSums(NamedTuple):
    dot: np.ndarray
    """sum over tokens of f_i(x) f_j(x), per matched pair [n]."""
    sq_a: np.ndarray
    """sum of f_i(x)^2 (the features of SAE A) [n]."""
    sq_b: np.ndarray
    """sum of f_j(x)^2 (their partners in SAE B) [n]."""
    tokens: int
    """Tokens summed over."""


def encode_features(sae: SparseAutoencoder, x_ND: torch.Tensor, ids) -> torch.Tensor:
    """Activations [N, n] of the features `ids` only (the encoder's columns when the activation is per latent)."""
    x_ND = x_ND.to(device=sae.W_enc.device, dtype=sae.W_enc.dtype)
    ids = torch.as_tensor(ids, dtype=torch.long, device=sae.W_enc.device)
    if sae.cfg.architecture not in ELEMENTWISE:
        return sae.encode(x_ND)[:, ids]
    if sae.cfg.apply_b_dec_to_input:
        x_ND = x_ND - sae.b_dec
    return sae.activation(x_ND @ sae.W_enc[:, ids] + sae.b_enc[ids])


@torch.no_grad()
def collect(lm, token_ids: np.ndarray, hooks: list[str], ignore_token_ids=(), batch_sequences: int = 8,
            progress: bool = False, sink_positions: int = 0) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """Activations at every hook [N, d_model] (special tokens and sink positions dropped, float32 on the CPU) and the
    sequence each vector comes from [N]."""
    acts: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    seqs = []
    for batch in lm.iter_activations(token_ids, hooks, batch_sequences, ignore_token_ids, sink_positions,
                                     "diff: activations for training" if progress else None):
        for hook, acts_BSD in batch.acts.items():
            acts[hook].append(acts_BSD[batch.keep_BS].float().cpu())
        keep_BS = batch.keep_BS.cpu()
        seq_BS = torch.arange(batch.start, batch.start + len(keep_BS))[:, None].expand_as(keep_BS)
        seqs.append(seq_BS[keep_BS].numpy())
    return {h: torch.cat(a) for h, a in acts.items()}, np.concatenate(seqs)


@torch.no_grad()
def pair_sums(lm, hook_a: str, sae_a: SparseAutoencoder, features, others: dict[str, tuple], token_ids: np.ndarray,
              ignore_token_ids=(), batch_sequences: int = 8, progress: bool = False,
              sink_positions: int = 0) -> dict[str, PairSums]:
    """For each other hook (hook -> (SAE B, partners of `features`)), the sums of Eq. 9 over the tokens, from one
    LM pass reading hook_a and every other hook."""
    hooks = [hook_a, *others]
    n = len(features)
    dot = {h: torch.zeros(n, dtype=torch.float64) for h in others}
    sq_b = {h: torch.zeros(n, dtype=torch.float64) for h in others}
    sq_a = torch.zeros(n, dtype=torch.float64)
    tokens = 0
    for batch in lm.iter_activations(token_ids, hooks, batch_sequences, ignore_token_ids, sink_positions,
                                     "diff: matching scores" if progress else None):
        f_a_Nn = encode_features(sae_a, batch.acts[hook_a][batch.keep_BS], features).double().cpu()
        sq_a += f_a_Nn.pow(2).sum(0)
        for hook, (sae_b, partners) in others.items():
            f_b_Nn = encode_features(sae_b, batch.acts[hook][batch.keep_BS], partners).double().cpu()
            dot[hook] += (f_a_Nn * f_b_Nn).sum(0)
            sq_b[hook] += f_b_Nn.pow(2).sum(0)
        tokens += int(batch.keep_BS.sum())
    return {h: PairSums(dot[h].numpy(), sq_a.numpy(), sq_b[h].numpy(), tokens) for h in others}
