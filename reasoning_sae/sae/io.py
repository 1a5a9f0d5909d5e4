"""The SAELens directory format: `cfg.json`, `sae_weights.safetensors` (W_enc [d_in, d_sae], b_enc [d_sae],
W_dec [d_sae, d_in], b_dec [d_in]; jumprelu adds threshold [d_sae]) and optionally `sparsity.safetensors` (`sparsity` = log10 feature density, as
SAELens writes it; we add `max_activation`, the largest activation of each latent seen in training)."""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from reasoning_sae.errors import UserError
from reasoning_sae.publish import atomic_dir
from reasoning_sae.sae.base import SparseAutoencoder
from reasoning_sae.sae.config import SAEConfig

CFG, WEIGHTS, SPARSITY = "cfg.json", "sae_weights.safetensors", "sparsity.safetensors"
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


def save_sae(sae: SparseAutoencoder, path, feature_stats: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the SAE (atomically: a reader never sees a half-written directory)."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        cfg, tensors = sae.saved_form()
        (tmp / CFG).write_text(json.dumps(cfg.to_sae_lens(), indent=2, default=str))
        save_file({name: t.detach().contiguous().cpu() for name, t in tensors.items()}, str(tmp / WEIGHTS))
        if feature_stats:
            save_file({k: v.detach().float().contiguous().cpu() for k, v in feature_stats.items()},
                      str(tmp / SPARSITY))
    return path


def _corrupt(path: Path, what: str) -> UserError:
    return UserError(f"SAE directory {path} has {what}: re-save it, or point sae.path at a complete SAELens directory")


def load_sae(path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"SAE directory {path} does not exist: train one (python -m reasoning_sae train) or fix the path")
    for name in (CFG, WEIGHTS):
        if not (path / name).is_file():
            raise _corrupt(path, f"no {name}")
    try:
        raw = json.loads((path / CFG).read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"a JSON object was expected, not {type(raw).__name__}")
        cfg = SAEConfig.from_sae_lens(raw)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise _corrupt(path, f"an unreadable {CFG} ({err})") from None
    try:
        weights = load_file(str(path / WEIGHTS), device=str(device))
    except (SafetensorError, OSError) as err:
        raise _corrupt(path, f"an unreadable {WEIGHTS} ({err})") from None
    sae = SparseAutoencoder(cfg, device=device)
    for name in PARAMS:
        expected = tuple(getattr(sae, name).shape)
        if name not in weights:
            raise _corrupt(path, f"no tensor {name} in {WEIGHTS}")
        if tuple(weights[name].shape) != expected:
            raise _corrupt(path, f"{name} of shape {tuple(weights[name].shape)} where cfg.json implies {expected}")
        getattr(sae, name).data = weights[name].to(getattr(sae, name).dtype)
    sae.load_extra(weights, lambda what: _corrupt(path, what))
    if raw.get("rescale_acts_by_decoder_norm"):
        # SAELens topk option: pre-activations times decoder norms pick the winners, whose activations are divided
        # by the norms again before decoding. Folding the norms into the weights computes exactly that.
        sae._fold_decoder_norm()
    try:
        sae.feature_stats = load_file(str(path / SPARSITY)) if (path / SPARSITY).is_file() else {}
    except (SafetensorError, OSError) as err:
        raise _corrupt(path, f"an unreadable {SPARSITY} ({err})") from None
    return sae
