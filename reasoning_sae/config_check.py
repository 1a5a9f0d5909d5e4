"""The type and range of every setting outside the typed config dataclasses, checked on the composed config before
any stage runs (the CLI's preflight) and again by the stages that read them.

YAML accepts anything an override says (`data.context_size=abc`, `score.batch_sequences=0`), and a bad value would
otherwise surface as a traceback deep inside a stage, perhaps hours in. `SETTINGS` says what each key accepts, with the
same `Rule` and `check_setting` as the dataclass fields (settings.py); `check(cfg)` turns the first violation into a
one-line UserError. Keys a config lacks are skipped. The `sae` group is TrainConfig's (train/config.py).
`check_group_choices(overrides)` runs first, on the overrides alone: a group option with no conf file."""

from collections.abc import Callable
from typing import Any, NamedTuple

from omegaconf import DictConfig, ListConfig, OmegaConf

from reasoning_sae.errors import UserError
from reasoning_sae.models.config import conf_dir
from reasoning_sae.seeding import MAX_SEED
from reasoning_sae.settings import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, Rule, check_setting
from reasoning_sae.steering.modes import MODES, POSITIONS, SITES, VECTORS

_MISSING = object()


class Spec(NamedTuple):
    """A setting's type (e.g. `int | None`) and Rule; `items`: the value is a list of that many (0: any number, none
    included)."""

    kind: Any
    rule: Rule = Rule()
    items: int | None = None


def spec(kind, items: int | None = None, **rule) -> Spec:
    return Spec(kind, Rule(**rule), items)


def _feature_ids(key: str, value) -> None:
    """steering.features: `top`, or ids, each an int or ints joined by '+' (steered together); [] for none."""
    ok = value == "top" or isinstance(value, list) and all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 0
        or isinstance(x, str) and all(p.strip().isdigit() for p in x.split("+")) for x in value)
    if not ok:
        raise UserError(f"{key}={value!r}: give top or a list of feature ids (ints; '+' joins ids steered together)")


def _f_max(key: str, value) -> None:
    if value not in ("interpret", "sae"):
        check_setting(key, value, float, Rule(**POSITIVE))


def _batch_size(key: str, value) -> None:
    if not (isinstance(value, str) and value.split(":")[0] == "auto"):
        check_setting(key, value, int, Rule(**AT_LEAST_ONE))


def _budget_forcing(key: str, value) -> None:
    """benchmark.budget_forcing, when enabled, against benchmark.max_gen_toks (evaluate/budget.py's check)."""
    from reasoning_sae.evaluate.budget import budget_setting

    budget_setting(value)


def _resamples(key: str, value) -> None:
    from reasoning_sae.evaluate.uncertainty import MIN_RESAMPLES  # scipy: imported only where the key is set

    check_setting(key, value, int, Rule(low=MIN_RESAMPLES))


def _device(key: str, value) -> None:
    """model.device must exist on this machine: checked here, before hours of work on another stage."""
    if value not in ("auto", "cpu"):
        from reasoning_sae.models.loading import resolve_device

        resolve_device(str(value))  # a UserError naming the fix when it does not


SETTINGS: dict[str, Spec | Callable[[str, Any], None]] = {
    "seed": spec(int, low=0, high=MAX_SEED),  # seed_everything's range (sae.seed: TrainConfig's, the same)
    "force": spec(bool), "resume": spec(bool), "activation_cache": spec(bool),
    "reuse_activations_gb": spec(float, **NON_NEGATIVE),
    "model.device": _device,
    "data.context_size": spec(int, low=2),
    "data.prepend_bos": spec(bool),
    "data.training_tokens": spec(int | None, **AT_LEAST_ONE),
    "data.batch_size": spec(int, **AT_LEAST_ONE),
    "data.num_proc": spec(int | None, **AT_LEAST_ONE),
    "data.shuffle_seed": spec(int, **NON_NEGATIVE),
    "data.separator": spec(str, choices=("eos", "bos", "none")),
    "data.heldout.sequences": spec(int, **NON_NEGATIVE),
    "data.scoring.docs": spec(int, **AT_LEAST_ONE),
    "data.scoring.sequences": spec(int | None, **AT_LEAST_ONE),
    "vocab.top_k": spec(int, **AT_LEAST_ONE),
    "vocab.general_frequency_threshold": spec(float, **FRACTION),
    "vocab.min_count": spec(int, **NON_NEGATIVE),
    "vocab.derived_words": spec(int | None, **AT_LEAST_ONE),
    "vocab.use": spec(str, choices=("default", "derived")),
    "score.window": spec(int, items=2, **NON_NEGATIVE),
    "score.alpha": spec(float, **NON_NEGATIVE),
    "score.q": spec(float | None, low=0, high=1, low_open=True, high_open=True),
    "score.top_k": spec(int | None, **AT_LEAST_ONE),
    "score.sequences": spec(int | None, **AT_LEAST_ONE),
    "score.batch_sequences": spec(int, **AT_LEAST_ONE),
    "interpret.sequences": spec(int | None, **AT_LEAST_ONE),
    "interpret.batch_sequences": spec(int, **AT_LEAST_ONE),
    "interpret.top_n": spec(int, **AT_LEAST_ONE),
    "interpret.context": spec(int, items=2, **NON_NEGATIVE),
    "interpret.quantile_bands": spec(int, **AT_LEAST_ONE),
    "interpret.per_band": spec(int, **NON_NEGATIVE),
    "interpret.reservoir": spec(int, **AT_LEAST_ONE),
    "interpret.held_out": spec(int, **NON_NEGATIVE),
    "interpret.logit_k": spec(int, **AT_LEAST_ONE),
    "falsify.sequences": spec(int, **AT_LEAST_ONE),
    "falsify.triggers": spec(int, **AT_LEAST_ONE),
    "falsify.sites": spec(int, low=2),  # Cohen's d and the t-test need two values
    "falsify.injections": spec(int, **AT_LEAST_ONE),
    "falsify.ablation": spec(int, **NON_NEGATIVE),
    "falsify.random_features": spec(int, **NON_NEGATIVE),
    "falsify.share": spec(float, **NON_NEGATIVE),
    "falsify.effect": spec(float, **NON_NEGATIVE),
    "falsify.alpha": spec(float, low=0, high=1, low_open=True, high_open=True),
    "falsify.batch_sequences": spec(int, **AT_LEAST_ONE),
    "steering.features": _feature_ids,
    "steering.top_n": spec(int, **AT_LEAST_ONE),
    "steering.gammas": spec(float, items=0),
    "steering.mode": spec(str, choices=MODES),
    "steering.positions": spec(str, choices=POSITIONS),
    "steering.site": spec(str, choices=SITES),
    "steering.f_max": _f_max,
    "steering.baseline": spec(bool),
    "steering.vectors": spec(str, items=0, choices=VECTORS),
    "benchmark.limit": spec(int | None, **AT_LEAST_ONE),
    "benchmark.repeats": spec(int, **AT_LEAST_ONE),
    "benchmark.max_gen_toks": spec(int, **AT_LEAST_ONE),
    "benchmark.batch_size": _batch_size,
    "benchmark.engine": spec(str, choices=("hf", "vllm")),
    "benchmark.max_model_len": spec(int | None, **AT_LEAST_ONE),
    "benchmark.word_ban.enabled": spec(bool),
    "benchmark.word_ban.seeds": spec(int, items=0, **NON_NEGATIVE),
    "benchmark.word_ban.scope": spec(str, choices=("thinking", "all")),
    "benchmark.budget_forcing.enabled": spec(bool),
    "benchmark.budget_forcing.min_thinking_tokens": spec(int, **AT_LEAST_ONE),
    "benchmark.budget_forcing.word": spec(str),
    "benchmark.budget_forcing.max_forces": spec(int, **AT_LEAST_ONE),
    "benchmark": _budget_forcing,  # after its parts: min_thinking_tokens below max_gen_toks
    "autointerp.max_features": spec(int | None, **AT_LEAST_ONE),
    "autointerp.n_prompts": spec(int, **AT_LEAST_ONE),
    "autointerp.gammas": spec(float, items=0),
    "autointerp.mode": spec(str, choices=MODES),
    "autointerp.positions": spec(str, choices=POSITIONS),
    "autointerp.max_new_tokens": spec(int, **AT_LEAST_ONE),
    "autointerp.temperature": spec(float, **NON_NEGATIVE),
    "autointerp.batch_size": spec(int | None, **AT_LEAST_ONE),
    "autointerp.scoring.enabled": spec(bool),
    "autointerp.scoring.methods": spec(str, items=0, choices=("detection", "fuzzing")),
    "autointerp.scoring.examples": spec(int, **AT_LEAST_ONE),
    "autointerp.scoring.batch_size": spec(int, **AT_LEAST_ONE),
    "autointerp.scoring.seed": spec(int, low=0, high=MAX_SEED),
    "diff.threshold": spec(float, low=-1, high=1),
    "diff.random_features": spec(int, **NON_NEGATIVE),
    "diff.chunk": spec(int, **AT_LEAST_ONE),
    "diff.crosslayer.same": spec(float, low=-1, high=1),
    "diff.crosslayer.maybe": spec(float, low=-1, high=1),
    "diff.crosslayer.sequences": spec(int | None, **AT_LEAST_ONE),
    "diff.crosslayer.batch_sequences": spec(int, **AT_LEAST_ONE),
    "figures.examples": spec(int, **NON_NEGATIVE),
    "figures.contexts": spec(int, **AT_LEAST_ONE),
    "figures.features_per_panel": spec(int, **AT_LEAST_ONE),
    "figures.uncertainty.resamples": _resamples,
    "figures.uncertainty.level": spec(float, low=0, high=1, low_open=True, high_open=True),
    "figures.uncertainty.seed": spec(int, low=0, high=MAX_SEED),
}


def check_one(key: str, value, rule: Spec | Callable[[str, Any], None]) -> None:
    if callable(rule):
        rule(key, value)
    elif rule.items is None:
        check_setting(key, value, rule.kind, rule.rule)
    elif not isinstance(value, list) or (rule.items and len(value) != rule.items):
        count = f"{rule.items} values" if rule.items else "values"
        raise UserError(f"{key}={value!r}: give a list of {count}, e.g. {key}=[...]")
    else:
        for i, item in enumerate(value):
            check_setting(f"{key}[{i}]", item, rule.kind, rule.rule)


def check(cfg: DictConfig) -> None:
    """A UserError for the first setting of `cfg` outside what it accepts (keys `cfg` lacks are skipped)."""
    for key, rule in SETTINGS.items():
        value = OmegaConf.select(cfg, key, default=_MISSING)
        if value is not _MISSING:
            check_one(key, OmegaConf.to_container(value, resolve=True)
                      if isinstance(value, (DictConfig, ListConfig)) else value, rule)


def check_group_choices(overrides: list[str]) -> None:
    """`group=option` naming a missing conf/group/option.yaml: one line here instead of Hydra's listing."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if key.startswith(("hydra", "+", "~")):
            continue
        group = conf_dir() / key
        if sep and group.is_dir() and value and "," not in value and not (group / f"{value}.yaml").exists():
            options = ", ".join(sorted(p.stem for p in group.glob("*.yaml")))
            raise UserError(f"unknown {key} {value!r}: use one of {options} (files in conf/{key}/)")
