"""SAE settings, serialised as the SAELens `cfg.json` (v6 layout: metadata nested; v5 flat files load too)."""

from dataclasses import asdict, dataclass, field, fields

import torch

from reasoning_sae.errors import UserError

# Keys that SAELens v6 keeps under `metadata` (and v5 keeps flat at the top level).
METADATA_KEYS = (
    "model_name", "hook_name", "hook_layer", "hook_head_index", "model_class_name", "prepend_bos", "dataset_path",
    "dataset_trust_remote_code", "context_size", "model_from_pretrained_kwargs", "seqpos_slice", "neuronpedia_id",
    "exclude_special_tokens", "sae_lens_training_version", "sae_lens_version",
)
SAE_LENS_VERSION = "6.0.0"  # the cfg.json layout we write
TOPK_ARCHITECTURES = ("topk", "batchtopk", "matryoshka_batchtopk")
# trained here, saved for inference as jumprelu (SAELens' BatchTopKTrainingSAE.save_inference_model)
SAVED_AS_JUMPRELU = ("batchtopk", "matryoshka_batchtopk")


def check_matryoshka_widths(widths, d_sae: int | None) -> None:
    """SAELens' _validate_matryoshka_config (matryoshka_batchtopk_sae.py), except that a list not ending at d_sae is
    refused here rather than silently extended."""
    fix = "set sae.matryoshka_widths to strictly increasing positive widths ending at d_sae"
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise UserError(f"matryoshka_widths={widths}: {fix}")
    if any(a >= b for a, b in zip(widths[:-1], widths[1:])):
        raise UserError(f"matryoshka_widths={list(widths)} is not strictly increasing: {fix}")
    if d_sae is not None and widths[-1] != d_sae:
        raise UserError(f"matryoshka_widths={list(widths)} does not end at d_sae={d_sae}: {fix}")


@dataclass
class SAEConfig:
    d_in: int
    """Width of the activations the SAE reads (the model's d_model)."""
    d_sae: int
    """Number of latents (features)."""
    architecture: str = "standard"
    """standard (ReLU), topk, jumprelu, batchtopk or matryoshka_batchtopk; see reasoning_sae.sae.ARCHITECTURES."""
    apply_b_dec_to_input: bool = False
    """Subtract b_dec from the input before encoding (the paper's YAML: false)."""
    k: int | None = None
    """Active latents per token (topk; batchtopk and matryoshka_batchtopk: on average over the batch)."""
    matryoshka_widths: list[int] | None = None
    """matryoshka_batchtopk: the nested prefix widths, strictly increasing, the last one d_sae."""
    dtype: str = "float32"
    """Parameter dtype."""
    metadata: dict = field(default_factory=dict)
    """Provenance: model_name, hook_name, hook_layer, dataset_path, context_size, tokens_seen, ..."""

    def __post_init__(self):
        if self.d_in < 1 or self.d_sae < 1:
            raise UserError(f"SAE sizes must be positive, got d_in={self.d_in}, d_sae={self.d_sae}")
        if self.architecture in TOPK_ARCHITECTURES and not (self.k and 0 < self.k <= self.d_sae):
            raise UserError(f"{self.architecture} SAE needs 0 < k <= d_sae, got k={self.k}: set sae.k")
        if self.architecture == "matryoshka_batchtopk":
            check_matryoshka_widths(self.matryoshka_widths, self.d_sae)
        dtype = getattr(torch, str(self.dtype), None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise UserError(f"unknown SAE dtype {self.dtype!r}: use float32, bfloat16, float16 or float64")

    def to_sae_lens(self) -> dict:
        """cfg.json as SAELens >= 6 writes it (activations are stored unnormalised: folded on save)."""
        out = {"architecture": self.architecture, "d_in": self.d_in, "d_sae": self.d_sae, "dtype": self.dtype,
               "device": "cpu", "apply_b_dec_to_input": self.apply_b_dec_to_input, "normalize_activations": "none",
               "reshape_activations": "none", "metadata": {"sae_lens_version": SAE_LENS_VERSION, **self.metadata}}
        if self.architecture == "topk":
            out.update(k=self.k, rescale_acts_by_decoder_norm=False)
        return out

    @classmethod
    def from_sae_lens(cls, raw: dict) -> "SAEConfig":
        """Parse a SAELens cfg.json, v6 (nested metadata) or v5 (flat), into our config."""
        metadata = dict(raw.get("metadata") or {})
        metadata.update({k: raw[k] for k in METADATA_KEYS if k in raw})  # v5: flat keys
        if "hook_point" in raw:  # before v4 hook_name was called hook_point
            metadata.setdefault("hook_name", raw["hook_point"])
        activation = raw.get("activation_fn_str", raw.get("activation_fn", "relu"))
        architecture = raw.get("architecture", "standard")
        if architecture in SAVED_AS_JUMPRELU:
            raise UserError(f"the SAE is a SAELens {architecture} training checkpoint: load the inference SAE SAELens "
                            f"saves for it (save_inference_model: a jumprelu SAE)")
        k = raw.get("k")
        if k is None:
            k = (raw.get("activation_fn_kwargs") or {}).get("k")
        if activation == "topk" and k is not None:
            architecture = "topk"
        normalize = raw.get("normalize_activations", "none")
        if normalize in ("constant_norm_rescale", "layer_norm", "covariance_whitening"):
            raise UserError(f"SAE normalises its input at run time ({normalize}), which is not supported: "
                            f"use an SAE with normalize_activations none or expected_average_only_in")
        return cls(d_in=int(raw["d_in"]), d_sae=int(raw["d_sae"]), architecture=architecture,
                   apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)), k=k,
                   dtype=str(raw.get("dtype", "float32")).replace("torch.", ""), metadata=metadata)

    def replace(self, **changes) -> "SAEConfig":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return SAEConfig(**{**values, **changes})

    def as_dict(self) -> dict:
        return asdict(self)
