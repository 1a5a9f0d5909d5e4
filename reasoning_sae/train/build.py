"""The SAE a training run starts from: freshly initialised (`sae.init`), or the weights of a trained SAE
(`sae.init_from`, for fine-tunes). The train stage and the diff stage's in-memory SAEs both build theirs here."""

from pathlib import Path

import torch

from reasoning_sae.errors import UserError
from reasoning_sae.sae import SAEConfig, SparseAutoencoder, initialize
from reasoning_sae.sae.io import CFG
from reasoning_sae.train.config import TrainConfig


def build_sae(tc: TrainConfig, d_model: int, metadata: dict) -> SparseAutoencoder:
    sae_cfg = SAEConfig(d_in=d_model, d_sae=tc.fixed_d_sae or tc.expansion_factor * d_model,
                        architecture=tc.architecture, apply_b_dec_to_input=tc.apply_b_dec_to_input, k=tc.k,
                        matryoshka_widths=tc.matryoshka_widths, metadata=metadata)
    if tc.init_from:
        return load_init(tc.init_from, sae_cfg)
    sae = initialize(SparseAutoencoder(sae_cfg), tc.init, tc.init_decoder_norm,
                     generator=torch.Generator().manual_seed(tc.seed))
    if tc.architecture == "jumprelu":
        with torch.no_grad():
            sae.threshold.fill_(tc.jumprelu_init_threshold)
    return sae


def load_init(path: str, sae_cfg: SAEConfig) -> SparseAutoencoder:
    """A new SAE of `sae_cfg` holding the weights of the SAE at `path` (which must have the same shape)."""
    if not (Path(path) / CFG).is_file():
        raise UserError(f"sae.init_from={path} is not an SAE directory (no cfg.json): point it at a trained sae/")
    init = SparseAutoencoder.load(path)
    ours = (sae_cfg.d_in, sae_cfg.d_sae, sae_cfg.architecture, sae_cfg.k, sae_cfg.apply_b_dec_to_input)
    theirs = (init.cfg.d_in, init.cfg.d_sae, init.cfg.architecture, init.cfg.k, init.cfg.apply_b_dec_to_input)
    # batchtopk SAEs are saved as jumprelu; fine-tuning does not resume them (the threshold restarts in training)
    if ours != theirs:
        raise UserError(f"sae.init_from={path} has (d_in, d_sae, architecture, k, apply_b_dec_to_input)={theirs} "
                        f"but this run builds {ours}: set sae.d_sae, sae.architecture, ... to match it")
    sae = SparseAutoencoder(sae_cfg.replace(metadata={**sae_cfg.metadata, "init_from": str(path)}))
    sae.load_state_dict(init.state_dict())
    return sae
