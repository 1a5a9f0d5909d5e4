"""The type and range of every scalar setting a stage reads, checked on the composed config before any stage runs.

YAML accepts anything an override says (`data.context_size=abc`, `score.batch_sequences=0`, `sae.lr=nan`), and a
bad value would otherwise surface as a traceback deep inside a stage, perhaps hours in. One table here says what each
key accepts; `check(cfg)` turns the first violation into a one-line UserError naming the fix. Keys absent from a
config are not checked; structured settings (model, sae, sources) are checked by their own dataclasses.
"""

import math
from collections.abc import Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from reasoning_sae.errors import UserError

Rule = Callable[[object], str | None]  # the value -> None when it is fine, else what it must be
_MISSING = object()


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def count(minimum: int = 1, null: bool = False) -> Rule:
    def rule(v):
        if (v is None and null) or (_is_int(v) and v >= minimum):
            return None
        return f"an integer >= {minimum}" + (" or null" if null else "")
    return rule


def number(low: float | None = None, high: float | None = None, strict: bool = False, null: bool = False) -> Rule:
    def rule(v):
        if v is None and null:
            return None
        ok = _is_number(v) and (low is None or (v > low if strict else v >= low)) and \
            (high is None or (v < high if strict else v <= high))
        if ok:
            return None
        bounds = {(True, True): f" in ({low}, {high})" if strict else f" in [{low}, {high}]",
                  (True, False): f" {'>' if strict else '>='} {low}", (False, True): f" <= {high}",
                  (False, False): ""}[(low is not None, high is not None)]
        return f"a finite number{bounds}" + (" or null" if null else "")
    return rule


def choice(*options) -> Rule:
    return lambda v: None if v in options else f"one of {', '.join(map(str, options))}"


def flag(v) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def numbers(item: Rule, length: int | None = None) -> Rule:
    def rule(v):
        if isinstance(v, (list, tuple)) and (length is None or len(v) == length) and (length or v) \
                and all(item(x) is None for x in v):
            return None
        return f"a list of {length or 'one or more'} values, each {item(object()) or 'valid'}"
    return rule


def feature_ids(v) -> str | None:
    """steering.features: `top`, or ids, each an int or ints joined by '+' (steered together); [] for none."""
    if v == "top":
        return None
    ok = isinstance(v, (list, tuple)) and all(
        _is_int(x) and x >= 0 or isinstance(x, str) and all(p.strip().isdigit() for p in x.split("+")) for x in v)
    return None if ok else "top or a list of feature ids (ints; '+' joins ids steered together)"


def f_max(v) -> str | None:
    return None if v in ("interpret", "sae") or (_is_number(v) and v > 0) else "interpret, sae or a number > 0"


def device(v) -> str | None:
    """model.device must exist on this machine: checked here, before hours of work on another stage."""
    if v in ("auto", "cpu"):
        return None
    from reasoning_sae.models.loading import resolve_device

    resolve_device(str(v))  # a UserError naming the fix when it does not
    return None


def batch_size(v) -> str | None:
    return None if v == "auto" or (_is_int(v) and v >= 1) or (isinstance(v, str) and v.startswith("auto:")) \
        else "an integer >= 1 or auto"


def rules() -> dict[str, Rule]:
    from reasoning_sae.steering.modes import MODES as modes
    from reasoning_sae.steering.modes import POSITIONS as positions
    from reasoning_sae.steering.modes import SITES as sites

    return {
        "seed": count(0),
        "force": flag, "resume": flag, "activation_cache": flag,
        "model.device": device,
        "data.context_size": count(2),
        "data.training_tokens": count(1, null=True),
        "data.batch_size": count(1),
        "data.num_proc": count(1, null=True),
        "data.shuffle_seed": count(0),
        "data.separator": choice("eos", "bos", "none"),
        "data.scoring.docs": count(1),
        "data.scoring.sequences": count(1, null=True),
        "vocab.top_k": count(1),
        "vocab.general_frequency_threshold": number(0, 1),
        "vocab.min_count": count(0),
        "vocab.derived_words": count(1, null=True),
        "vocab.use": choice("default", "derived"),
        "score.window": numbers(count(0), length=2),
        "score.alpha": number(0),
        "score.q": number(0, 1, strict=True, null=True),
        "score.top_k": count(1, null=True),
        "score.sequences": count(1, null=True),
        "score.batch_sequences": count(1),
        "interpret.sequences": count(1, null=True),
        "interpret.batch_sequences": count(1),
        "interpret.top_n": count(1),
        "interpret.context": numbers(count(0), length=2),
        "interpret.quantile_bands": count(1),
        "interpret.per_band": count(0),
        "interpret.reservoir": count(1),
        "interpret.logit_k": count(1),
        "steering.features": feature_ids,
        "steering.top_n": count(1),
        "steering.gammas": numbers(number()),
        "steering.mode": choice(*modes),
        "steering.positions": choice(*positions),
        "steering.site": choice(*sites),
        "steering.f_max": f_max,
        "steering.baseline": flag,
        "benchmark.limit": count(1, null=True),
        "benchmark.repeats": count(1),
        "benchmark.max_gen_toks": count(1),
        "benchmark.batch_size": batch_size,
        "benchmark.engine": choice("hf", "vllm"),
        "benchmark.max_model_len": count(1, null=True),
        "benchmark.word_ban.seeds": lambda v: None if isinstance(v, (list, tuple)) and all(
            _is_int(x) for x in v) else "a list of integer seeds",
        "benchmark.word_ban.scope": choice("thinking", "all"),
        "autointerp.max_features": count(1, null=True),
        "autointerp.n_prompts": count(1),
        "autointerp.gammas": numbers(number()),
        "autointerp.mode": choice(*modes),
        "autointerp.positions": choice(*positions),
        "autointerp.max_new_tokens": count(1),
        "autointerp.temperature": number(0),
        "autointerp.batch_size": count(1, null=True),
        "diff.threshold": number(-1, 1),
        "diff.random_features": count(0),
        "diff.chunk": count(1),
        "diff.crosslayer.same": number(-1, 1),
        "diff.crosslayer.maybe": number(-1, 1),
        "diff.crosslayer.sequences": count(1, null=True),
        "diff.crosslayer.batch_sequences": count(1),
        "figures.examples": count(0),
        "figures.contexts": count(1),
        "figures.features_per_panel": count(1),
    }


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def check(cfg: DictConfig) -> None:
    """A UserError for the first setting of `cfg` outside what it accepts (keys `cfg` lacks are skipped)."""
    for key, rule in rules().items():
        value = OmegaConf.select(cfg, key, default=_MISSING)
        if value is _MISSING:
            continue
        value = _plain(value)
        wanted = rule(value)
        if wanted:
            raise UserError(f"{key}={value!r}: it must be {wanted}; fix the override or the conf/ file that sets it "
                            f"(--cfg job prints the composed config)")
