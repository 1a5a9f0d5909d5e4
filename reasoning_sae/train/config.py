"""SAE training settings (the `sae` config group): architecture, initialisation, loss and optimisation.

The defaults are the paper's SAE (sae-lens 5.5.2 with the authors' training/configs/r1-distill-llama-8b.yaml and
v2's 1B tokens) and the only copy of them: the `sae` group starts from them (config_defaults.py) and conf/sae/*.yaml
hold only what they change. Every setting declares what it accepts (its type, and a range or a set of names), and
`TrainConfig.from_mapping`, the path every user-given `sae.*` takes, checks each value against that before anything
else runs: a bad value is one line naming the setting and what to give instead (reasoning_sae/settings.py). Nothing
here imports torch, so the CLI composes and checks a command without it."""

import importlib
from collections.abc import Container, Iterator
from dataclasses import dataclass, fields

from reasoning_sae.errors import UserError
from reasoning_sae.seeding import MAX_SEED
from reasoning_sae.settings import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, check_setting, setting

NORMALIZATIONS = ("none", "expected_average_only_in")
TOPK_ARCHITECTURES = ("topk", "batchtopk", "matryoshka_batchtopk")  # as reasoning_sae.sae.config's (no torch here)


def check_matryoshka_widths(widths, d_sae: int | None) -> None:
    from reasoning_sae.sae.config import check_matryoshka_widths as check  # imports torch: only for matryoshka

    check(widths, d_sae)


class RegisteredNames(Container[str]):
    """The names of a registry that lives in a torch-importing module, read when a value is first checked."""

    def __init__(self, module: str, attribute: str):
        self.module, self.attribute = module, attribute

    def _names(self) -> Container[str]:
        return getattr(importlib.import_module(self.module), self.attribute)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


ARCHITECTURE_NAMES = RegisteredNames("reasoning_sae.sae", "ARCHITECTURES")
INIT_PRESETS = RegisteredNames("reasoning_sae.sae.init", "PRESETS")


@dataclass
class TrainConfig:
    architecture: str = setting("standard", choices=ARCHITECTURE_NAMES)
    """SAE architecture: standard (ReLU + decoder-norm-weighted L1), topk, jumprelu, batchtopk or
    matryoshka_batchtopk (the last three as SAELens trains them; the batch-topk ones are saved as jumprelu)."""
    init: str = setting("paper", choices=INIT_PRESETS)
    """Initialisation preset: paper (decoder_heuristic_init as sae-lens 5.5.2 did it: uniform [0, 1) rows, so every
    row points into the positive orthant, W_enc = W_dec^T) or fixed (random directions, SAELens' later fix)."""
    init_decoder_norm: float = setting(0.1, **POSITIVE)
    """Norm of every decoder row at initialisation."""
    init_from: str | None = None
    """An SAE directory (SAELens format) to start from instead of `init`: fine-tuning (stage-wise model diffing)."""
    expansion_factor: int = setting(16, **AT_LEAST_ONE)
    """d_sae = expansion_factor * d_model unless d_sae is set (the paper: 65,536 latents on d_model 4,096)."""
    d_sae: int | None = setting(None, **AT_LEAST_ONE)
    """Number of latents (overrides expansion_factor)."""
    apply_b_dec_to_input: bool = False
    """Subtract b_dec before encoding (the paper's YAML: false)."""
    k: int | None = setting(None, **AT_LEAST_ONE)
    """Active latents per token (topk; batchtopk and matryoshka_batchtopk: on average over the batch)."""
    topk_threshold_lr: float = setting(0.01, **FRACTION)
    """batchtopk, matryoshka_batchtopk: rate of the running threshold used at inference (SAELens' default)."""
    matryoshka_widths: list | None = None
    """matryoshka_batchtopk: nested prefix widths, strictly increasing; the last one is d_sae (sets it if unset)."""
    use_matryoshka_aux_loss: bool = False
    """matryoshka_batchtopk: AuxK per level, each level's dead latents fitting that level's residual (SAELens')."""
    l0_coefficient: float = setting(1.0, **NON_NEGATIVE)
    """jumprelu: weight of the sparsity loss l0_loss (SAELens' default)."""
    l0_warm_up_fraction: float = setting(0.0, **FRACTION)
    """jumprelu: l0_coefficient rises linearly from 0 over this share of the steps (SAELens: no warm-up)."""
    jumprelu_init_threshold: float = setting(0.01, **NON_NEGATIVE)
    """jumprelu: every latent's threshold at initialisation."""
    jumprelu_bandwidth: float = setting(0.05, **POSITIVE)
    """jumprelu: width of the straight-through estimator's rectangle kernel."""
    jumprelu_sparsity_loss_mode: str = setting("step", choices=("step", "tanh", "quadratic"))
    """jumprelu: step (L0, DeepMind), tanh (Anthropic) or quadratic (around target_l0, Gemma Scope 2)."""
    jumprelu_tanh_scale: float = setting(4.0, **POSITIVE)
    """jumprelu, tanh mode: the scale inside the tanh."""
    jumprelu_ste_to_input: bool = False
    """jumprelu: the estimator's gradient also reaches the pre-activations (Anthropic), not the threshold alone."""
    pre_act_loss_coefficient: float | None = setting(None, **NON_NEGATIVE)
    """jumprelu: Anthropic's pre-activation loss on dead latents (null: off, as in SAELens; Anthropic: 3e-6)."""
    target_l0: float | None = setting(None, **POSITIVE)
    """jumprelu, quadratic mode: the L0 the penalty centres on."""
    normalize_activations: str = setting("expected_average_only_in", choices=NORMALIZATIONS)
    """none, or expected_average_only_in: scale inputs to mean norm sqrt(d_in), folded into the weights on save."""
    l1_coefficient: float = setting(5.0, **NON_NEGATIVE)
    """Sparsity penalty lambda (standard)."""
    l1_warm_up_fraction: float = setting(0.05, **FRACTION)
    """lambda rises linearly from 0 over this share of the steps (the YAML: l1_warm_up_steps 10,000 of 200,000)."""
    aux_coefficient: float = setting(1 / 32, **NON_NEGATIVE)
    """AuxK loss weight (topk)."""
    lr: float = setting(5e-5, **POSITIVE)
    """Adam learning rate."""
    adam_beta1: float = setting(0.9, low=0, high=1, high_open=True)
    """Adam beta1."""
    adam_beta2: float = setting(0.999, low=0, high=1, high_open=True)
    """Adam beta2."""
    lr_warm_up_fraction: float = setting(0.0, **FRACTION)
    """Linear learning-rate warm-up over this share of the steps."""
    lr_decay_fraction: float = setting(0.2, **FRACTION)
    """Linear decay to 0 over this final share of the steps (the YAML: lr_decay_steps 40,000 of 200,000)."""
    grad_clip: float = setting(1.0, **NON_NEGATIVE)
    """Gradient-norm clipping (0: none)."""
    training_tokens: int = setting(1_000_000_000, **AT_LEAST_ONE)
    """Activation vectors to train on, over all DDP ranks (tokens minus excluded special tokens); v2 Sec. 4.1: 1B
    (244,140 steps); the released YAML: 819,200,000 (sae=released_code)."""
    batch_size_tokens: int = setting(4096, **AT_LEAST_ONE)
    """Activation vectors per optimiser step, over all DDP ranks (each rank trains on its share)."""
    n_batches_in_buffer: int = setting(32, **AT_LEAST_ONE)
    """Mixing buffer size in batches: filled, shuffled, half served."""
    store_batch_size_prompts: int = setting(8, **AT_LEAST_ONE)
    """Sequences per LM forward pass when filling the buffer."""
    dead_feature_window: int = setting(1000, **AT_LEAST_ONE)
    """A latent silent for this many steps counts as dead (metrics, AuxK)."""
    feature_sampling_window: int = setting(1000, **AT_LEAST_ONE)
    """Steps over which feature density is measured."""
    log_every: int = setting(100, **AT_LEAST_ONE)
    """Steps between metric logs."""
    checkpoint_every: int = setting(0, **NON_NEGATIVE)
    """Steps between Lightning checkpoints for resume (0: 5 checkpoints over the run, the YAML's n_checkpoints)."""
    eval_sequences: int = setting(2048, **NON_NEGATIVE)
    """Held-out training-corpus sequences for the end-of-training evaluation (the paper: "computed on 2,048
    sequences of length 1,024")."""
    seed: int = setting(42, low=0, high=MAX_SEED)
    """Seed of initialisation and buffer shuffling (the run is seeded with Lightning's seed_everything)."""

    def __post_init__(self):
        if self.batch_size_tokens < 1 or self.training_tokens < self.batch_size_tokens:
            raise UserError(f"sae.training_tokens ({self.training_tokens}) must be at least sae.batch_size_tokens "
                            f"({self.batch_size_tokens}) > 0")
        if self.normalize_activations not in NORMALIZATIONS:
            raise UserError(f"unknown sae.normalize_activations {self.normalize_activations!r}: "
                            f"use none or expected_average_only_in")
        if self.architecture in TOPK_ARCHITECTURES and self.k is None:
            raise UserError(f"sae.architecture={self.architecture} needs sae.k: set the number of active latents per "
                            f"token")
        if self.k is not None and self.fixed_d_sae is not None and self.k > self.fixed_d_sae:
            raise UserError(f"sae.k={self.k} is more than d_sae={self.fixed_d_sae}: set sae.k <= d_sae")
        if self.architecture == "matryoshka_batchtopk":
            check_matryoshka_widths(self.matryoshka_widths, self.d_sae)
        elif self.matryoshka_widths is not None:
            raise UserError(f"sae.matryoshka_widths is read by sae.architecture=matryoshka_batchtopk only, not "
                            f"{self.architecture}: remove it or use sae=matryoshka")
        if self.architecture == "jumprelu" and self.jumprelu_sparsity_loss_mode == "quadratic":
            if self.target_l0 is None or self.fixed_d_sae is not None and self.target_l0 > self.fixed_d_sae:
                raise UserError(f"sae.jumprelu_sparsity_loss_mode=quadratic needs 0 < sae.target_l0 <= d_sae, got "
                                f"{self.target_l0}: set sae.target_l0")

    @property
    def fixed_d_sae(self) -> int | None:
        """d_sae when the settings fix it (sae.d_sae, or the last matryoshka width); else expansion_factor decides."""
        return self.d_sae or (self.matryoshka_widths[-1] if self.architecture == "matryoshka_batchtopk" else None)

    def loss_settings(self) -> dict:
        """The architecture settings the SAE's training_loss reads each step (the scheduled coefficients aside)."""
        return {"topk_threshold_lr": self.topk_threshold_lr, "use_matryoshka_aux_loss": self.use_matryoshka_aux_loss,
                "jumprelu_bandwidth": self.jumprelu_bandwidth,
                "jumprelu_sparsity_loss_mode": self.jumprelu_sparsity_loss_mode,
                "jumprelu_tanh_scale": self.jumprelu_tanh_scale, "jumprelu_ste_to_input": self.jumprelu_ste_to_input,
                "pre_act_loss_coefficient": self.pre_act_loss_coefficient, "target_l0": self.target_l0}

    @property
    def total_steps(self) -> int:
        return self.training_tokens // self.batch_size_tokens

    @classmethod
    def from_mapping(cls, values: dict) -> "TrainConfig":
        """The settings of a user's `sae` config, each checked against its field's type and rule first."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"unknown sae setting(s) {unknown}: allowed are {sorted(known)}")
        checked = {name: check_setting(f"sae.{name}", value, known[name].type, known[name].metadata.get("rule"),
                                       known[name].default) for name, value in values.items()}
        return cls(**checked)
