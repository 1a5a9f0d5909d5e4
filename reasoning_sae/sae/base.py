"""`SparseAutoencoder`: parameters named and shaped as in SAELens' sae_weights.safetensors, a few hooks per
architecture (like SAELens: one file each), and the SAELens directory format for save/load.

Architectures are registered explicitly, as SAELens does (`register_sae_class(name, cls)`, all of them in
`reasoning_sae/sae/__init__.py`): the name is cfg.json's `architecture`, and `SparseAutoencoder(cfg)` builds the
class registered for `cfg.architecture`. A name registered twice is an error, not a silent replacement."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

import torch
from torch import nn

from reasoning_sae.sae.config import SAEConfig


class TrainOutput(NamedTuple):
    loss: torch.Tensor
    """Total training loss (scalar)."""
    losses: dict[str, torch.Tensor]
    """Its parts, named as SAELens logs them (mse_loss, l1_loss, auxiliary_reconstruction_loss)."""
    feats_BF: torch.Tensor
    """Latent activations of the batch (detached)."""
    recon_BD: torch.Tensor
    """Reconstruction of the batch (detached)."""


class SparseAutoencoder(nn.Module):
    """x_hat = f(x) W_dec + b_dec with f(x) = act((x - b_dec * apply_b_dec_to_input) W_enc + b_enc)."""

    def __new__(cls, cfg: SAEConfig | None = None, *args, **kwargs):
        # SparseAutoencoder(cfg) builds the class registered for cfg.architecture (copy/pickle call __new__ with no
        # cfg); a subclass called directly builds itself.
        if cls is SparseAutoencoder and cfg is not None:
            cls = architecture_class(cfg.architecture)
        return super().__new__(cls)

    def __init__(self, cfg: SAEConfig, device: str | torch.device = "cpu"):
        super().__init__()
        self.cfg = cfg
        dtype = getattr(torch, cfg.dtype)
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae, dtype=dtype, device=device))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype, device=device))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in, dtype=dtype, device=device))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=dtype, device=device))

    # --- hooks an architecture fills -------------------------------------------------------------------------
    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def training_loss(self, x_BD: torch.Tensor, **coefficients) -> TrainOutput:
        raise NotImplementedError

    def latent_thresholds(self, idx_G: torch.Tensor) -> torch.Tensor:
        """The JumpReLU threshold [G] of latents `idx_G`: each such latent is relu(pre_i) * [pre_i > threshold_i] of
        its own pre-activation alone (what steering's clamp mode reads). Architectures whose latent depends on the
        others' pre-activations do not override this and refuse."""
        raise clamp_refused(self.cfg.architecture)

    def latent_activation(self, pre_BG: torch.Tensor, idx_G: torch.Tensor) -> torch.Tensor:
        """The activations of latents `idx_G` [G] from their own pre-activations `pre_BG` [..., G] alone."""
        threshold_G = self.latent_thresholds(idx_G).to(pre_BG.dtype)
        return torch.relu(pre_BG) * (pre_BG > threshold_G).to(pre_BG.dtype)

    def saved_form(self) -> tuple[SAEConfig, dict[str, torch.Tensor]]:
        """The cfg and the tensors `save` writes (an architecture with more state adds to them)."""
        return self.cfg, {name: getattr(self, name) for name in ("W_enc", "b_enc", "W_dec", "b_dec")}

    def load_extra(self, weights: dict[str, torch.Tensor], corrupt) -> None:
        """Read the tensors beyond W_enc, b_enc, W_dec, b_dec from a loaded sae_weights.safetensors; `corrupt(what)`
        is the UserError to raise for a missing or bad one."""

    # --- shared ------------------------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    def encode_pre(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations [..., d_sae] of activations [..., d_in]."""
        return self.activation(self.encode_pre(x))

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        return feats @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def fold_decoder_norm(self) -> torch.Tensor:
        """Unit-norm decoder rows with the norms moved into the encoder (SAELens' fold_W_dec_norm): the
        reconstruction is unchanged and each latent's activation is scaled by its decoder norm. Returns the norms.
        Refused for topk (as SAELens does) and batchtopk/matryoshka_batchtopk in their training form: rescaling the
        pre-activations per latent would change the winners (saved, they are jumprelu SAEs, which fold exactly)."""
        if self.cfg.architecture in ("topk", "batchtopk", "matryoshka_batchtopk"):
            from reasoning_sae.errors import UserError

            raise UserError(f"folding decoder norms would change which latents a {self.cfg.architecture} SAE selects: "
                            "use the SAE unfolded (its activations are not rescaled by decoder norm)")
        return self._fold_decoder_norm()

    @torch.no_grad()
    def _fold_decoder_norm(self) -> torch.Tensor:
        norms_F = self.W_dec.norm(dim=-1).clamp(min=1e-8)
        self.W_dec.div_(norms_F[:, None])
        self.W_enc.mul_(norms_F[None, :])
        self.b_enc.mul_(norms_F)
        return norms_F

    @torch.no_grad()
    def fold_input_scaling(self, scale: float) -> None:
        """Turn an SAE trained on `scale * x` into one that reads `x` and reconstructs `x` (SAELens'
        fold_activation_norm_scaling_factor)."""
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)

    def hook_name(self, lm=None) -> str:
        """The hook the SAE reads (from its metadata), checked against `lm` when given: width, layer range,
        model name. Raises UserError naming the mismatch."""
        from reasoning_sae.errors import UserError

        hook = self.cfg.metadata.get("hook_name")
        if not hook:
            raise UserError("the SAE's cfg.json names no hook_name: add metadata.hook_name "
                            "(e.g. blocks.19.hook_resid_post)")
        if lm is None:
            return hook
        if self.d_in != lm.d_model:
            raise UserError(f"SAE d_in={self.d_in} does not match the model width d_model={lm.d_model}: "
                            f"use an SAE trained on {lm.config.name}")
        lm.hook_point(hook)
        trained_on = self.cfg.metadata.get("model_name")
        if trained_on and trained_on != lm.config.name and trained_on.split("/")[-1] != lm.config.name.split("/")[-1]:
            raise UserError(f"the SAE was trained on {trained_on!r}, not on {lm.config.name!r}: load that model "
                            f"(model.name={trained_on}) or an SAE trained on this one")
        return hook

    def save(self, path, feature_stats: dict[str, torch.Tensor] | None = None):
        from reasoning_sae.sae.io import save_sae

        return save_sae(self, path, feature_stats)

    @classmethod
    def load(cls, path, device: str | torch.device = "cpu") -> "SparseAutoencoder":
        from reasoning_sae.sae.io import load_sae

        return load_sae(path, device)


def clamp_refused(architecture: str):
    from reasoning_sae.errors import UserError

    return UserError(f"steering mode clamp needs each latent's activation from its own pre-activation, which a "
                     f"{architecture} SAE does not give: use mode=add")


def has_latent_thresholds(sae_class: type[SparseAutoencoder]) -> bool:
    """Whether the class gives each latent from its own pre-activation (it overrides `latent_thresholds`)."""
    return sae_class.latent_thresholds is not SparseAutoencoder.latent_thresholds


_REGISTRY: dict[str, type[SparseAutoencoder]] = {}
ARCHITECTURES: Mapping[str, type[SparseAutoencoder]] = MappingProxyType(_REGISTRY)
"""The registered architectures by name (read-only: add one with `register_sae_class`)."""


def register_sae_class(architecture: str, sae_class: type[SparseAutoencoder]) -> None:
    """Make `SparseAutoencoder(cfg)` and `SparseAutoencoder.load` build `sae_class` for cfg.architecture ==
    `architecture` (SAELens' register_sae_class). Registering a name twice raises ValueError."""
    if not (isinstance(sae_class, type) and issubclass(sae_class, SparseAutoencoder)) or sae_class is SparseAutoencoder:
        raise TypeError(f"SAE architecture {architecture!r}: {sae_class!r} is not a subclass of SparseAutoencoder")
    if not isinstance(architecture, str) or not architecture:
        raise ValueError(f"SAE architecture name {architecture!r}: give a non-empty string")
    if architecture in _REGISTRY:
        raise ValueError(f"SAE architecture {architecture!r} is already registered (to "
                         f"{_REGISTRY[architecture].__module__}.{_REGISTRY[architecture].__qualname__})")
    _REGISTRY[architecture] = sae_class


def architecture_class(name: str) -> type[SparseAutoencoder]:
    """The class registered for `name`, or a UserError naming the registered ones."""
    from reasoning_sae.errors import UserError

    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown SAE architecture {name!r}: use one of {', '.join(sorted(_REGISTRY))}") from None
