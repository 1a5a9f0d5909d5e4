"""Model settings: one typed dataclass, filled from `conf/model/*.yaml` or from keyword arguments.

ModelConfig's defaults are the only copy of them: the `model` config group starts from them (config_defaults.py) and
a conf/model/*.yaml holds only what differs for its model."""

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from omegaconf import OmegaConf

from reasoning_sae.errors import UserError


def conf_dir() -> Path:
    """The Hydra config tree: `conf/` beside the package (editable install), or $REASONING_SAE_CONF. The dataclass
    defaults it composes are registered in Hydra's ConfigStore first (config_defaults.register)."""
    from reasoning_sae import config_defaults

    config_defaults.register()
    return Path(os.environ.get("REASONING_SAE_CONF", Path(__file__).resolve().parents[2] / "conf"))


@dataclass
class ModelConfig:
    name: str
    """Alias (see conf/model), hub id `org/name`, local HF directory, or path to a .gguf file. No default: the run's
    model is the `model` group's choice (conf/config.yaml: the demo's smollm2-135m-instruct)."""
    revision: str | None = None
    """Hub commit to load; pinned for the paper's models so a rerun gets the same weights."""
    dtype: str = "auto"
    """auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16 or float16."""
    device: str = "auto"
    """auto (cuda if present), cpu, cuda, cuda:N."""
    trust_remote_code: bool = False
    """Run code shipped with a hub model; off unless asked for."""
    layer: int | None = None
    """Default layer whose residual stream the SAE reads (the paper: 19 of DeepSeek-R1-Distill-Llama-8B)."""
    n_layers: int | None = None
    """Number of decoder layers, checked against the loaded model when given."""
    d_model: int | None = None
    """Residual stream width, checked against the loaded model when given."""
    bos_token_id: int | None = None
    """Beginning-of-sequence id (None: the tokenizer's)."""
    eos_token_id: int | None = None
    """End-of-sequence id, also the document separator when packing (None: the tokenizer's)."""
    ignore_token_ids: list[int] = field(default_factory=list)
    """Token ids whose activations are dropped from SAE training and scoring (the paper: BOS/EOS)."""
    sink_positions: int = 1
    """Leading positions of every sequence dropped from SAE training, scoring, dashboards and diffing: position 0 of
    each packed sequence is an attention sink (models/positions.py). 0 keeps them, as the released code did."""
    response_prefix: str | None = None
    """Text that opens the assistant's turn in evaluation, after the chat template's generation prompt: the format
    the corpus' responses start with, where the template does not write it (R1's template itself ends the
    generation prompt in `<think>\n`)."""
    think_start: str | None = "<think>"
    """Text that opens the thinking segment: stripped from reasoning traces (vocab stage), and written before the
    reasoning of a `chat_format=template` corpus (null: nothing)."""
    think_end: str | None = "</think>"
    """Text that closes the thinking segment: thinking length counts the tokens before it, a word ban lasts until
    it, traces are cut at it, a `template` corpus writes it after the reasoning (null: no thinking segment)."""
    think_end_token_id: int | None = None
    """Single-token id of think_end (128014 for R1-Distill-Llama); null: looked up in the tokenizer."""
    chat_format: str = "r1"
    """How corpora format conversations: `r1` (the released code's literal DeepSeek strings, `<think>` and
    `</think>` included) or `template` (the tokenizer's own chat template, for models without the R1 special
    tokens)."""
    aliases: list[str] = field(default_factory=list)
    """Other names that select this config."""


def _from_mapping(values: dict) -> ModelConfig:
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown model setting(s) {unknown}: allowed are {sorted(known)}")
    if not values.get("name"):
        raise UserError("model.name is not set: choose a model (model=<a conf/model option>) or set model.name")
    sink = values.get("sink_positions", 1)
    if isinstance(sink, bool) or not isinstance(sink, int) or sink < 0:
        raise UserError(f"model.sink_positions={sink!r}: give the number of leading positions to leave out (0 keeps "
                        f"them all, 1 drops each sequence's attention sink)")
    return ModelConfig(**values)


def known_model_configs() -> dict[str, ModelConfig]:
    """Every conf/model/*.yaml, keyed by its file stem, its `name` and each alias."""
    configs: dict[str, ModelConfig] = {}
    for path in sorted(conf_dir().glob("model/*.yaml")):
        cfg = _from_mapping(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
        for key in (path.stem, cfg.name, *cfg.aliases):
            configs.setdefault(key, cfg)
    return configs


def model_config(model: "str | ModelConfig | dict", **overrides) -> ModelConfig:
    """A ModelConfig for a name (known configs supply revision and token ids), a dict or a config."""
    if isinstance(model, ModelConfig):
        base = {f.name: getattr(model, f.name) for f in fields(ModelConfig)}
    elif isinstance(model, str):
        known = known_model_configs().get(model)
        base = {f.name: getattr(known, f.name) for f in fields(ModelConfig)} if known else {"name": model}
    else:
        base = dict(model)
    return _from_mapping({**base, **overrides})
