"""Weight initialisation presets.

`paper`: sae-lens 5.5.2 with the paper's YAML (`decoder_heuristic_init: true`): decoder rows drawn uniform in
[0, 1) (so every row points into the positive orthant: a bug SAELens later fixed) scaled to norm 0.1,
W_enc = W_dec^T, biases zero. `fixed`: the same with random directions (Gaussian rows)."""

import torch

from reasoning_sae.errors import UserError
from reasoning_sae.sae.base import SparseAutoencoder

PRESETS = ("paper", "fixed")


@torch.no_grad()
def initialize(sae: SparseAutoencoder, preset: str = "fixed", decoder_norm: float = 0.1,
               generator: torch.Generator | None = None) -> SparseAutoencoder:
    shape = (sae.d_sae, sae.d_in)
    if preset == "paper":
        rows = torch.rand(shape, generator=generator, dtype=torch.float32)
    elif preset == "fixed":
        rows = torch.randn(shape, generator=generator, dtype=torch.float32)
    else:
        raise UserError(f"unknown SAE init {preset!r}: use one of {', '.join(PRESETS)}")
    rows = rows / rows.norm(dim=1, keepdim=True) * decoder_norm
    sae.W_dec.copy_(rows)
    sae.W_enc.copy_(rows.T)
    sae.b_enc.zero_()
    sae.b_dec.zero_()
    return sae
