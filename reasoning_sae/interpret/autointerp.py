"""Automatic interpretation by steering (paper Sec. 4.2, after Kuznetsov et al. 2025).

For each feature the model answers a few problems, stratified across domains, while the feature is steered at each
gamma of a grid (gamma 0 is the unsteered reference). Step 1: an explainer LLM describes the feature from those
generations. Step 2: it groups the described features, as in the paper's Table 4. The explainer is any OpenAI-compatible
Chat Completions endpoint, called with httpx; its prompts are the Jinja2 templates in `prompts/`."""

import functools
import itertools
import json
import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from reasoning_sae.data.formats import openthoughts_user_prompt
from reasoning_sae.errors import UserError
from reasoning_sae.interpret.explainer import Explainer, snippet
from reasoning_sae.markdown import markdown_table as pipe_table
from reasoning_sae.steering import steer

log = logging.getLogger(__name__)
PROMPTS = Path(__file__).parent / "prompts"
DESCRIPTION_KEYS = ("description", "function", "effect_type", "strengthening", "weakening")
UNGROUPED = "Ungrouped"
_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)\s*```", re.S)
_FEATURE_ID = re.compile(r"(?:feature\s*)?#?\s*(\d+)", re.I)


class Prompt(NamedTuple):
    """One problem: its domain and the user turn the model answers."""

    domain: str
    text: str


class Generation(NamedTuple):
    """One completion of `prompt` with `feature` steered at `gamma` (0: unsteered)."""

    feature: int
    gamma: float
    domain: str
    prompt: str
    text: str


@dataclass(frozen=True)
class FeatureDescription:
    """Step 1's answer for one feature."""

    feature: int
    description: str
    function: str = ""
    effect_type: str = ""
    strengthening: str = ""
    weakening: str = ""
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureGroup:
    """Step 2's answer: one row of the paper's Table 4."""

    name: str
    features: tuple[int, ...]
    function: str = ""
    effect_type: str = ""
    strengthening: str = ""
    weakening: str = ""


# ---- step 0: prompts and steered generations ----------------------------------------------------------------------

def sample_prompts(rows: Sequence[Mapping], n: int, seed: int) -> list[Prompt]:
    """n problems taken round-robin over the domains, domains and each domain's rows in a seeded shuffle."""
    by_domain: dict[str, list[Mapping]] = {}
    for row in rows:
        if "problem" not in row:
            raise UserError("autointerp needs problems: point data.scoring.source at an openthoughts-format source "
                            "(columns problem, domain)")
        by_domain.setdefault(str(row.get("domain") or "unknown"), []).append(row)
    rng = random.Random(seed)
    domains = rng.sample(sorted(by_domain), len(by_domain))  # with n < domains, which ones depends on the seed
    queues = [rng.sample(by_domain[d], len(by_domain[d])) for d in domains]
    interleaved = (r for r in itertools.chain.from_iterable(itertools.zip_longest(*queues)) if r is not None)
    return [Prompt(str(r.get("domain") or "unknown"), openthoughts_user_prompt(dict(r)))
            for r in itertools.islice(interleaved, n)]


def generate(lm, prompts: Sequence[Prompt], max_new_tokens: int, batch_size: int | None = None,
             temperature: float = 0.0, seed: int = 0) -> list[str]:
    """Completions of the prompts in chat format: greedy, or sampled and seeded when temperature > 0."""
    size = batch_size or len(prompts)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {}
    texts: list[str] = []
    for start in range(0, len(prompts), size):
        torch.manual_seed(seed + start)
        texts += lm.generate([p.text for p in prompts[start:start + size]], max_new_tokens=max_new_tokens, **sampling)
    return texts


def steered_generations(lm, sae, feature: int, gammas: Sequence[float], prompts: Sequence[Prompt],
                        f_max: float | None, max_new_tokens: int, mode: str = "add", *, positions: str = "all",
                        reference: Sequence[str] | None = None, batch_size: int | None = None,
                        temperature: float = 0.0, seed: int = 0) -> list[Generation]:
    """Generations for every gamma of the grid plus 0, the unsteered reference (`reference`, when already computed).

    gamma 0 means no hook at all, in either mode (in clamp mode a steered gamma 0 would ablate the feature)."""
    rows: list[Generation] = []
    for gamma in sorted({0.0, *(float(g) for g in gammas)}):
        if gamma == 0:
            texts = list(reference) if reference is not None else generate(
                lm, prompts, max_new_tokens, batch_size, temperature, seed)
        else:
            with steer(lm, sae, feature, gamma, mode=mode, positions=positions, f_max=f_max):
                texts = generate(lm, prompts, max_new_tokens, batch_size, temperature, seed)
        rows += [Generation(feature, gamma, p.domain, p.text, t) for p, t in zip(prompts, texts, strict=True)]
    return rows


# ---- the explainer: an OpenAI-compatible Chat Completions client ---------------------------------------------------

# ---- prompts and replies -------------------------------------------------------------------------------------------

@functools.cache
def _templates() -> Environment:
    return Environment(loader=FileSystemLoader(PROMPTS), undefined=StrictUndefined, trim_blocks=True,
                       lstrip_blocks=True, autoescape=False)


def render_messages(template: str, **context) -> list[dict[str, str]]:
    """The system and user messages of a prompt template (its `system` and `user` blocks)."""
    tmpl = _templates().get_template(template)
    ctx = tmpl.new_context(context)
    return [{"role": role, "content": "".join(tmpl.blocks[role](ctx)).strip()} for role in ("system", "user")]


def render_chat(template: str, **context) -> list[dict[str, str]]:
    """Every block of a prompt template as one message, in the template's order; a block's role is the first word of
    its name (`system`, `user_1`, `assistant_1`, ..., `user`): few-shot turns before the question."""
    tmpl = _templates().get_template(template)
    ctx = tmpl.new_context(context)
    return [{"role": name.split("_")[0], "content": "".join(block(ctx)).strip()} for name, block in tmpl.blocks.items()]


def parse_json_reply(text: str, what: str) -> dict:
    """The JSON object in an explainer reply: inside a code fence, or between its first `{` and last `}`."""
    fenced = _FENCE.search(text)
    for candidate in ([fenced.group(1)] if fenced else []) + [text[text.find("{"): text.rfind("}") + 1]]:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise UserError(f"the explainer's reply for {what} is not the JSON object asked for ({snippet(text)}): "
                    "rerun, or use a stronger explainer.model")


def _text(value) -> str:
    if isinstance(value, list | tuple):
        return "; ".join(_text(v) for v in value if v is not None)
    return "" if value is None else str(value).strip()


def _clip(text: str, max_chars: int | None) -> str:
    return text if not max_chars or len(text) <= max_chars else text[:max_chars] + " […]"


def _examples(generations: Sequence[Generation], max_chars: int | None) -> list[dict]:
    """Generations as one entry per prompt, its completions ordered by gamma."""
    by_prompt: dict[str, dict] = {}
    for g in sorted(generations, key=lambda g: g.gamma):  # stable: prompt order kept
        entry = by_prompt.setdefault(g.prompt, {"domain": g.domain, "prompt": g.prompt, "outputs": []})
        entry["outputs"].append((g.gamma, _clip(g.text.strip(), max_chars)))
    return list(by_prompt.values())


def describe_feature(explainer: Explainer, feature: int, generations: Sequence[Generation], mode: str = "add",
                     max_chars: int | None = None) -> FeatureDescription:
    """Step 1: the explainer's description of one feature from its steered generations."""
    messages = render_messages("describe.j2", feature=feature, mode=mode, examples=_examples(generations, max_chars),
                               gammas=sorted({g.gamma for g in generations}))

    def parse(text: str) -> dict:
        reply = parse_json_reply(text, f"feature {feature}")
        if not _text(reply.get("description")):
            raise UserError(f"the explainer's reply for feature {feature} has no description "
                            f"(keys: {sorted(reply)}): rerun, or use a stronger explainer.model")
        return reply

    reply = explainer.ask(messages, parse)
    examples = reply.get("examples") or []
    examples = examples if isinstance(examples, list) else [examples]
    return FeatureDescription(feature, **{k: _text(reply.get(k)) for k in DESCRIPTION_KEYS},
                              examples=tuple(_text(e) for e in examples))


def _feature_id(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _FEATURE_ID.fullmatch(str(value).strip())
    if not match:
        raise UserError(f"the explainer's grouping names {value!r}, which is not a feature id: rerun, or use a "
                        "stronger explainer.model")
    return int(match.group(1))


def parse_groups(reply: Mapping, features: Sequence[int]) -> list[FeatureGroup]:
    """Validated groups: every id must be one of `features`; features left out go to a final `Ungrouped` group."""
    raw = reply.get("groups")
    if not isinstance(raw, list) or not all(isinstance(g, Mapping) for g in raw):
        raise UserError(f"the explainer's grouping has no list of groups (keys: {sorted(reply)}): rerun, or use a "
                        "stronger explainer.model")
    groups = [FeatureGroup(_text(g.get("name")) or f"Group {i + 1}",
                           tuple(dict.fromkeys(_feature_id(f) for f in g.get("features") or [])),
                           *(_text(g.get(k)) for k in ("function", "effect_type", "strengthening", "weakening")))
              for i, g in enumerate(raw)]
    unknown = sorted({f for g in groups for f in g.features} - set(features))
    if unknown:
        raise UserError(f"the explainer grouped feature ids {unknown} that it was not given "
                        f"({sorted(features)}): rerun, or use a stronger explainer.model")
    grouped = {f for g in groups for f in g.features}
    missing = tuple(f for f in features if f not in grouped)
    if missing:
        log.warning("the explainer left features %s out of every group: listed as %r", list(missing), UNGROUPED)
    return [g for g in groups if g.features] + ([FeatureGroup(UNGROUPED, missing)] if missing else [])


def group_features(explainer: Explainer, descriptions: Sequence[FeatureDescription]) -> list[FeatureGroup]:
    """Step 2: the explainer's grouping of the described features (the paper's Table 4)."""
    features = [d.feature for d in descriptions]
    return explainer.ask(render_messages("group.j2", descriptions=descriptions),
                         lambda text: parse_groups(parse_json_reply(text, "the grouping"), features))


# ---- the table ------------------------------------------------------------------------------------------------------

def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or "–"


def _behaviour(strengthening: str, weakening: str) -> str:
    parts = [f"{label}: {text.rstrip('.')}." for label, text in (("Strengthening", strengthening),
                                                                  ("Weakening", weakening)) if text]
    return " ".join(parts)


def markdown_table(groups: Sequence[FeatureGroup], descriptions: Sequence[FeatureDescription]) -> str:
    """Table 4's layout (group, features, function, effect type, observed behaviour), then one row per feature."""
    by_group = pd.DataFrame([[_cell(g.name), ", ".join(map(str, g.features)), _cell(g.function), _cell(g.effect_type),
                              _cell(_behaviour(g.strengthening, g.weakening))] for g in groups],
                            columns=["Group", "Features", "Possible function", "Effect type", "Observed behavior"])
    by_feature = pd.DataFrame([[str(d.feature), _cell(d.description), _cell(d.function), _cell(d.effect_type),
                                _cell(_behaviour(d.strengthening, d.weakening))] for d in descriptions],
                              columns=["Feature", "Description", "Possible function", "Effect type",
                                       "Observed behavior"])
    return pipe_table(by_group) + "\n" + pipe_table(by_feature)
