"""SAE training settings (the `sae` config group): architecture, initialisation, loss and optimisation."""

from dataclasses import dataclass, fields

from reasoning_sae.errors import UserError


@dataclass
class TrainConfig:
    architecture: str = "standard"
    """SAE architecture: standard (ReLU + decoder-norm-weighted L1) or topk."""
    init: str = "paper"
    """Initialisation preset: paper (sae-lens 5.5.2 heuristic, positive-orthant rows) or fixed (random directions)."""
    init_decoder_norm: float = 0.1
    """Norm of every decoder row at initialisation."""
    init_from: str | None = None
    """An SAE directory (SAELens format) to start from instead of `init`: fine-tuning (stage-wise model diffing)."""
    expansion_factor: int = 16
    """d_sae = expansion_factor * d_model unless d_sae is set."""
    d_sae: int | None = None
    """Number of latents (overrides expansion_factor)."""
    apply_b_dec_to_input: bool = False
    """Subtract b_dec before encoding (the paper's YAML: false)."""
    k: int | None = None
    """Active latents per token (topk)."""
    normalize_activations: str = "expected_average_only_in"
    """none, or expected_average_only_in: scale inputs to mean norm sqrt(d_in), folded into the weights on save."""
    l1_coefficient: float = 5.0
    """Sparsity penalty lambda (standard)."""
    l1_warm_up_fraction: float = 0.05
    """lambda rises linearly from 0 over this share of the steps."""
    aux_coefficient: float = 1 / 32
    """AuxK loss weight (topk)."""
    lr: float = 5e-5
    """Adam learning rate."""
    adam_beta1: float = 0.9
    """Adam beta1."""
    adam_beta2: float = 0.999
    """Adam beta2."""
    lr_warm_up_fraction: float = 0.0
    """Linear learning-rate warm-up over this share of the steps."""
    lr_decay_fraction: float = 0.2
    """Linear decay to 0 over this final share of the steps."""
    grad_clip: float = 1.0
    """Gradient-norm clipping."""
    training_tokens: int = 1_000_000_000
    """Activation vectors to train on, over all DDP ranks (tokens minus excluded special tokens); v2: 1B."""
    batch_size_tokens: int = 4096
    """Activation vectors per optimiser step, over all DDP ranks (each rank trains on its share)."""
    n_batches_in_buffer: int = 32
    """Mixing buffer size in batches: filled, shuffled, half served."""
    store_batch_size_prompts: int = 8
    """Sequences per LM forward pass when filling the buffer."""
    dead_feature_window: int = 1000
    """A latent silent for this many steps counts as dead (metrics, AuxK)."""
    feature_sampling_window: int = 1000
    """Steps over which feature density is measured."""
    dead_feature_threshold: float = 1e-4
    """Density below which a latent counts as dead in the density metric."""
    log_every: int = 10
    """Steps between metric logs."""
    checkpoint_every: int = 0
    """Steps between Lightning checkpoints for resume (0: 5 checkpoints over the run)."""
    eval_sequences: int = 32
    """Held-out training-corpus sequences for the end-of-training evaluation."""
    seed: int = 42
    """Seed of initialisation and buffer shuffling."""

    def __post_init__(self):
        if self.batch_size_tokens < 1 or self.training_tokens < self.batch_size_tokens:
            raise UserError(f"sae.training_tokens ({self.training_tokens}) must be at least sae.batch_size_tokens "
                            f"({self.batch_size_tokens}) > 0")
        if self.normalize_activations not in ("none", "expected_average_only_in"):
            raise UserError(f"unknown sae.normalize_activations {self.normalize_activations!r}: "
                            f"use none or expected_average_only_in")

    @property
    def total_steps(self) -> int:
        return self.training_tokens // self.batch_size_tokens

    @classmethod
    def from_mapping(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown sae setting(s) {unknown}: allowed are {sorted(known)}")
        return cls(**values)
