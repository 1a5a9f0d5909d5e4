"""Scored explanations, as delphi scores them (EleutherAI/delphi, delphi/scorers/classifier/): the explainer reads a
feature's description and a shuffled mix of held-out contexts of the interpret stage (`held_out.json`: activating
ones across the quantile bands, and silent ones, where the feature is 0 on every token) and labels each.

- detection (detection.py): which contexts contain the feature;
- fuzzing (fuzz.py, sample.py): every context shows some tokens between << and >>: in an activating context the
  tokens where the feature fires (at least 0.3 of the context's maximum), in a silent one as many wrong tokens as
  the activating contexts have firing ones on average (rounded up), the window's centre always among them; are the
  highlights right?

Contexts go `batch_size` to a request in a seeded shuffle (classifier.py); the answer is a Python list of 0/1 per
request. Each method is reported per feature as balanced accuracy (the mean of the true-positive and true-negative
rates) and F1, as delphi/log/result_analysis.py computes them, and per group of the autointerp stage as the mean
over the group's features. In this paper the descriptions come from steered generations, not from contexts, so every
context is held out from the description; the held-out ones are also none that the dashboards show."""

import itertools
import math
import random
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import pandas as pd

from reasoning_sae.errors import UserError
from reasoning_sae.interpret.autointerp import FeatureGroup, render_chat
from reasoning_sae.interpret.explainer import Explainer, snippet
from reasoning_sae.markdown import markdown_table

METHODS = ("detection", "fuzzing")
FUZZ_THRESHOLD = 0.3  # delphi/scorers/classifier/sample.py: highlighted at >= 0.3 of the context's maximum
LEFT, RIGHT = "<<", ">>"
ALL = "All features"
_LIST = re.compile(r"\[([^\[\]]*)\]")
_LABELS = {"1": True, "0": False, "true": True, "false": False}
_DISABLE = "or set autointerp.scoring.enabled=false"


class Context(NamedTuple):
    """A held-out context: its text pieces, the feature's activation on each, the piece of the window's centre, and
    the quantile band of an activating context (0 the lowest; None: a silent context)."""

    pieces: tuple[str, ...]
    acts: tuple[float, ...]
    center: int
    band: int | None

    @property
    def activating(self) -> bool:
        return self.band is not None


class Sample(NamedTuple):
    """One example of a request: the text shown and what a right label says (detection: the feature fires in it;
    fuzzing: its highlights are where the feature fires)."""

    text: str
    truth: bool
    band: int | None


class Judgement(NamedTuple):
    """The explainer's label for one example: request `request` of `method` for `feature`, example `example` in it."""

    feature: int
    method: str
    request: int
    example: int
    text: str
    truth: bool
    prediction: bool
    band: int | None


class FeatureScore(NamedTuple):
    """How well one feature's description predicts its contexts by one method."""

    feature: int
    method: str
    n: int                      # examples labelled
    positives: int              # ... of which right labels say 1
    negatives: int
    balanced_accuracy: float    # (true-positive rate + true-negative rate) / 2; 0.5 is chance
    f1: float
    precision: float
    recall: float


# ---- held-out contexts ---------------------------------------------------------------------------------------------

def _context(raw: Mapping, band: int | None) -> Context:
    return Context(tuple(raw["tokens"]), tuple(float(a) for a in raw["acts"]), int(raw["center"]), band)


def held_out_contexts(held_out: Mapping, features: Sequence[int], n: int, where: str = "held_out.json"
                      ) -> dict[int, list[Context]]:
    """Per feature, up to `n` activating contexts (round robin over the bands, highest first) and `n` silent ones,
    from the interpret stage's `held_out.json` (read as {feature id: {"activating": [...], "non_activating": [...]}});
    a feature with no context of either kind is a one-line UserError."""
    out = {}
    for feature in features:
        record = held_out.get(str(feature), held_out.get(feature))
        if record is None:
            raise UserError(f"feature {feature} has no held-out contexts in {where}: add it to "
                            f"interpret.extra_features and rerun the interpret stage, {_DISABLE}")
        active, silent = record.get("activating") or [], record.get("non_activating") or []
        if not active:
            raise UserError(f"feature {feature} never fires on the interpret stage's corpus, so no context can test "
                            f"its description: leave it out of autointerp.features, {_DISABLE}")
        if not silent:
            raise UserError(f"feature {feature} fires in every context window of the interpret stage's corpus, so no "
                            f"silent context can test its description: narrow interpret.context and rerun the "
                            f"interpret stage, {_DISABLE}")
        by_band: dict[int, list[Mapping]] = {}
        for raw in active:
            by_band.setdefault(int(raw.get("band", 0)), []).append(raw)
        rounds = itertools.zip_longest(*(by_band[b] for b in sorted(by_band, reverse=True)))
        active = [raw for row in rounds for raw in row if raw is not None][:n]
        out[int(feature)] = ([_context(raw, int(raw.get("band", 0))) for raw in active]
                             + [_context(raw, None) for raw in silent[:n]])
    return out


# ---- the examples of each method ---------------------------------------------------------------------------------

def show(text: str) -> str:
    """A context on one line of the prompt: newlines written as \\n."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def highlight(pieces: Sequence[str], marked: set[int]) -> str:
    """The pieces with each run of marked ones between one << and >> (delphi's _highlight)."""
    parts = []
    for on, run in itertools.groupby(range(len(pieces)), key=lambda i: i in marked):
        text = "".join(pieces[i] for i in run)
        parts.append(f"{LEFT}{text}{RIGHT}" if on else text)
    return show("".join(parts))


def detection_samples(contexts: Sequence[Context]) -> list[Sample]:
    """Each context as plain text; right labels: 1 for the activating ones."""
    return [Sample(show("".join(c.pieces)), c.activating, c.band) for c in contexts]


def fuzzing_samples(contexts: Sequence[Context], rng: random.Random) -> list[Sample]:
    """Activating contexts with the pieces where the feature fires (>= FUZZ_THRESHOLD of the context's maximum)
    highlighted, right label 1; silent ones with as many wrong pieces highlighted as the activating contexts have
    firing pieces on average, rounded up (delphi's mean_n_activations_ceil), the centre always among them (delphi
    always marks the position where its windows put the activating token), right label 0."""
    active = [c for c in contexts if c.activating]
    n_wrong = math.ceil(sum(sum(a > 0 for a in c.acts) for c in active) / max(len(active), 1))
    samples = []
    for c in contexts:
        top = max(c.acts, default=0.0)
        if c.activating:
            marked = {i for i, a in enumerate(c.acts) if a >= FUZZ_THRESHOLD * top}
        else:
            others = [i for i, a in enumerate(c.acts) if a <= FUZZ_THRESHOLD * top and i != c.center]
            marked = {c.center, *rng.sample(others, min(max(n_wrong - 1, 0), len(others)))}
        samples.append(Sample(highlight(c.pieces, marked), c.activating, c.band))
    return samples


def requests(samples: Sequence[Sample], batch_size: int, rng: random.Random) -> list[list[Sample]]:
    """The samples in a seeded shuffle, `batch_size` to a request (delphi's Classifier: shuffle, then _batch)."""
    shuffled = list(samples)
    rng.shuffle(shuffled)
    return [shuffled[i:i + batch_size] for i in range(0, len(shuffled), batch_size)]


# ---- asking and scoring ------------------------------------------------------------------------------------------

def parse_labels(text: str, n: int) -> list[bool] | None:
    """The last bracketed list of exactly `n` labels (1/0, true/false, quoted or not) in an answer; None when there
    is none (delphi reads the first bracketed list as JSON; this also takes a list after some reasoning)."""
    for inside in reversed(_LIST.findall(text)):
        items = [item.strip().strip("'\"").lower() for item in inside.split(",")]
        if len(items) == n and all(item in _LABELS for item in items):
            return [_LABELS[item] for item in items]
    return None


def judge(explainer: Explainer, method: str, explanation: str, batch: Sequence[Sample], what: str) -> list[bool]:
    """The explainer's labels for one request; an answer without a readable list is asked again (explainer.retries),
    then a one-line UserError."""
    messages = render_chat(f"{method}.j2", explanation=explanation, examples=[s.text for s in batch])

    def parse(answer: str) -> list[bool]:
        labels = parse_labels(answer, len(batch))
        if labels is None:
            raise UserError(f"the explainer's {method} answer for {what} is not a list of {len(batch)} labels 0 or 1 "
                            f"({snippet(answer)}): rerun, or use a stronger explainer.model")
        return labels

    return explainer.ask(messages, parse)


def classification_score(feature: int, method: str, truth: Sequence[bool], prediction: Sequence[bool]
                         ) -> FeatureScore:
    """Balanced accuracy, F1, precision and recall of the positive class, 0 where undefined (written out as delphi's
    compute_classification_metrics does: four counts)."""
    pairs = list(zip(truth, prediction, strict=True))
    tp = sum(t and p for t, p in pairs)
    fn = sum(t and not p for t, p in pairs)
    tn = sum(not t and not p for t, p in pairs)
    fp = sum(not t and p for t, p in pairs)
    pos, neg = tp + fn, tn + fp
    recall, tnr = (tp / pos if pos else 0.0), (tn / neg if neg else 0.0)
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return FeatureScore(feature, method, pos + neg, pos, neg, (recall + tnr) / 2, f1, precision, recall)


def score_feature(explainer: Explainer, feature: int, explanation: str, contexts: Sequence[Context], method: str,
                  batch_size: int, seed: int) -> tuple[FeatureScore, list[Judgement]]:
    """One method's score of one description, and every label behind it. The shuffle and fuzzing's wrong highlights
    are seeded by (seed, feature, method), so a feature's requests do not depend on which other features are scored
    (and a cached answer stays valid when the feature list changes)."""
    if method not in METHODS:
        raise UserError(f"unknown scoring method {method!r}: use some of {', '.join(METHODS)}")
    rng = random.Random(f"{seed}:{feature}:{method}")
    samples = detection_samples(contexts) if method == "detection" else fuzzing_samples(contexts, rng)
    judgements = []
    for r, batch in enumerate(requests(samples, batch_size, rng)):
        labels = judge(explainer, method, explanation, batch, f"feature {feature} (request {r + 1})")
        judgements += [Judgement(feature, method, r, i, s.text, s.truth, label, s.band)
                       for i, (s, label) in enumerate(zip(batch, labels, strict=True))]
    score = classification_score(feature, method, [j.truth for j in judgements], [j.prediction for j in judgements])
    return score, judgements


# ---- tables ------------------------------------------------------------------------------------------------------

def scores_frame(scores: Sequence[FeatureScore], features: Sequence[int], methods: Sequence[str] = METHODS
                 ) -> pd.DataFrame:
    """One row per feature (in `features`' order): <method>_balanced_accuracy, <method>_f1 and <method>_n for
    every method of METHODS (empty for a method not run)."""
    by_key = {(s.feature, s.method): s for s in scores}
    rows = []
    for feature in features:
        row: dict = {"feature": int(feature)}
        for method in METHODS:
            s = by_key.get((feature, method)) if method in methods else None
            row.update({f"{method}_balanced_accuracy": s.balanced_accuracy if s else math.nan,
                        f"{method}_f1": s.f1 if s else math.nan, f"{method}_n": s.n if s else 0})
        rows.append(row)
    return pd.DataFrame(rows)


def group_frame(frame: pd.DataFrame, groups: Sequence[FeatureGroup]) -> pd.DataFrame:
    """Per group of the autointerp stage (a feature in two groups counts in both), then all features: the mean
    balanced accuracy and F1 of each method over its features."""
    value_columns = [c for c in frame.columns if c.endswith(("_balanced_accuracy", "_f1"))]
    rows = []
    for name, members in [*((g.name, list(g.features)) for g in groups), (ALL, frame["feature"].tolist())]:
        part = frame[frame["feature"].isin(members)]
        rows.append({"group": name, "features": ", ".join(map(str, members)), "n_features": len(part),
                     **part[value_columns].mean().to_dict()})
    return pd.DataFrame(rows)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or "–"


def _pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def scores_markdown(frame: pd.DataFrame, groups: pd.DataFrame, descriptions: Mapping[int, str],
                    methods: Sequence[str] = METHODS) -> str:
    """Two pipe tables: per feature (its description, each method's balanced accuracy and F1 in %, n), per group."""
    def cells(row) -> list[str]:
        return [x for m in methods for x in (_pct(row[f"{m}_balanced_accuracy"]), _pct(row[f"{m}_f1"]))]

    heads = [x for m in methods for x in (f"{m.capitalize()} bal. acc. %", f"{m.capitalize()} F1 %")]
    n_cols = [f"{m}_n" for m in methods]
    by_feature = pd.DataFrame([[str(r["feature"]), _cell(descriptions.get(r["feature"], "")), *cells(r),
                                " / ".join(str(int(r[c])) for c in n_cols)] for r in frame.to_dict("records")],
                              columns=["Feature", "Description", *heads, "n (" + " / ".join(methods) + ")"])
    by_group = pd.DataFrame([[_cell(r["group"]), r["features"], str(r["n_features"]), *cells(r)]
                             for r in groups.to_dict("records")], columns=["Group", "Features", "n", *heads])
    return markdown_table(by_feature) + "\n" + markdown_table(by_group)
