"""Automatic interpretation by steering (paper Sec. 4.2, after Kuznetsov et al. 2025).

For each feature the model answers a few problems, stratified across domains, while the feature is steered at each
gamma of a grid (gamma 0 is the unsteered reference). Step 1: an explainer LLM describes the feature from those
generations. Step 2: it groups the described features, as in the paper's Table 4. The explainer is any OpenAI-compatible
Chat Completions endpoint, called with httpx; its prompts are the Jinja2 templates in `prompts/`."""

import functools
import itertools
import json
import logging
import os
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import httpx
import torch
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from reasoning_sae.data.formats import openthoughts_user_prompt
from reasoning_sae.errors import UserError
from reasoning_sae.steering import steer

log = logging.getLogger(__name__)
PROMPTS = Path(__file__).parent / "prompts"
ENV_BASE_URL, ENV_MODEL, DEFAULT_MODEL = "OPENAI_BASE_URL", "REASONING_SAE_EXPLAINER_MODEL", "gpt-4o"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
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

def endpoint(cfg: Mapping) -> tuple[str | None, str]:
    """(base URL, model) from the config, falling back to $OPENAI_BASE_URL and $REASONING_SAE_EXPLAINER_MODEL."""
    base_url = cfg.get("base_url") or os.environ.get(ENV_BASE_URL) or None
    return base_url, cfg.get("model") or os.environ.get(ENV_MODEL) or DEFAULT_MODEL


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class Explainer:
    """POST {base_url}/chat/completions with a bearer key; retries transport errors, 429 and 5xx with backoff."""

    base_url: str
    model: str = DEFAULT_MODEL
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int | None = None
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 2.0

    @classmethod
    def from_config(cls, cfg: Mapping) -> "Explainer":
        """From the `autointerp.explainer` config; the key is read from the environment variable it names."""
        base_url, model = endpoint(cfg)
        if not base_url:
            raise UserError(f"no explainer endpoint: set autointerp.explainer.base_url=... or ${ENV_BASE_URL} to an "
                            "OpenAI-compatible /v1 URL (e.g. https://api.openai.com/v1, or http://localhost:8000/v1 "
                            "for a local vLLM server)")
        key_env = cfg.get("api_key_env") or "OPENAI_API_KEY"
        return cls(base_url=base_url, model=model, api_key=os.environ.get(key_env) or None, api_key_env=key_env,
                   temperature=float(cfg.get("temperature", 0.0)), max_tokens=cfg.get("max_tokens"),
                   timeout=float(cfg.get("timeout", 120.0)), retries=int(cfg.get("retries", 3)),
                   backoff=float(cfg.get("backoff", 2.0)))

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/chat/completions"

    def chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The assistant message's text for one request."""
        body = {"model": self.model, "messages": list(messages), "temperature": self.temperature}
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        return self._content(self._post(body))

    def _post(self, body: dict) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        with httpx.Client(timeout=self.timeout) as client:
            for attempt in range(self.retries + 1):
                try:
                    response = client.post(self.url, json=body, headers=headers)
                    if response.status_code not in RETRY_STATUS or attempt == self.retries:
                        break
                except httpx.TransportError as err:
                    if attempt == self.retries:
                        raise UserError(f"cannot reach the explainer at {self.url} ({type(err).__name__}: "
                                        f"{_snippet(err)}): check explainer.base_url, that the server is up, "
                                        f"and explainer.timeout={self.timeout:g} s") from None
                time.sleep(self.backoff * 2 ** attempt)
        if response.is_error:
            raise UserError(self._http_error(response))
        return response

    def _http_error(self, response: httpx.Response) -> str:
        try:
            detail = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            detail = response.text
        status = response.status_code
        fix = ("set a valid API key in $" + self.api_key_env if status in (401, 403)
               else "check explainer.base_url (usually ends in /v1) and explainer.model" if status == 404
               else f"still failing after {self.retries} retries: wait, or raise explainer.retries" if status == 429
               else f"server error after {self.retries} retries: check the server" if status >= 500
               else "the server rejected the request: check explainer.model and explainer.temperature")
        return f"explainer at {self.url} answered HTTP {status} ({_snippet(detail) or response.reason_phrase}): {fix}"

    def _content(self, response: httpx.Response) -> str:
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str) or not content.strip():
            raise UserError(f"explainer at {self.url} sent no Chat Completions message ({_snippet(response.text)}): "
                            "point explainer.base_url at an OpenAI-compatible /v1 endpoint")
        return content


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
    raise UserError(f"the explainer's reply for {what} is not the JSON object asked for ({_snippet(text)}): "
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
    reply = parse_json_reply(explainer.chat(messages), f"feature {feature}")
    if not _text(reply.get("description")):
        raise UserError(f"the explainer's reply for feature {feature} has no description "
                        f"(keys: {sorted(reply)}): rerun, or use a stronger explainer.model")
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
    reply = parse_json_reply(explainer.chat(render_messages("group.j2", descriptions=descriptions)), "the grouping")
    return parse_groups(reply, [d.feature for d in descriptions])


# ---- the table ------------------------------------------------------------------------------------------------------

def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or "–"


def _behaviour(strengthening: str, weakening: str) -> str:
    parts = [f"{label}: {text.rstrip('.')}." for label, text in (("Strengthening", strengthening),
                                                                  ("Weakening", weakening)) if text]
    return " ".join(parts)


def markdown_table(groups: Sequence[FeatureGroup], descriptions: Sequence[FeatureDescription]) -> str:
    """Table 4's layout (group, features, function, effect type, observed behaviour), then one row per feature."""
    rows = ["| Group | Features | Possible function | Effect type | Observed behavior |", "|---|---|---|---|---|"]
    rows += [f"| {_cell(g.name)} | {', '.join(map(str, g.features))} | {_cell(g.function)} | {_cell(g.effect_type)} "
             f"| {_cell(_behaviour(g.strengthening, g.weakening))} |" for g in groups]
    rows += ["", "| Feature | Description | Possible function | Effect type | Observed behavior |",
             "|---|---|---|---|---|"]
    rows += [f"| {d.feature} | {_cell(d.description)} | {_cell(d.function)} | {_cell(d.effect_type)} "
             f"| {_cell(_behaviour(d.strengthening, d.weakening))} |" for d in descriptions]
    return "\n".join(rows) + "\n"
