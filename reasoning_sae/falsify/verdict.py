"""The verdict on one feature, and the shares of a group of features.

A feature is a **token detector** when its trigger tokens, inserted into chat text, move its activation
(1) as Ma et al. 2026 (arXiv 2601.05679) classify a feature `token_driven`: Cohen's d of the injected against the
un-injected activations >= 0.8 (Cohen's large effect) with an independent t-test p < 0.01 (scripts/
run_token_injection_experiment.py, `run_injection_experiment`: d with the pooled sd sqrt((var_a + var_b) / 2) of
population variances, `scipy.stats.ttest_ind`); and (2) up to at least `share` (0.5) of its mean activation in
genuine reasoning windows (ours: Ma et al. report that ratio, their "transfer ratio", without a threshold).
A feature that passes Ma et al.'s small-effect test (d >= 0.2, p < 0.05: their `weakly_token_driven` and above) but
not both is **token-sensitive**; the others are **context-dependent** (their name); a feature with no trigger
token (it never fired where its triggers were sought) or fewer than two injected sites is **untested**.
Our unit is the window mean around each injected token (ReasonScore's window), theirs the maximum over a 128-token
text: one pass then scores every feature."""

import json
import math
import warnings
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

TOKEN_DETECTOR, TOKEN_SENSITIVE, CONTEXT_DEPENDENT, UNTESTED = ("token_detector", "token_sensitive",
                                                                "context_dependent", "untested")
VERDICTS = (TOKEN_DETECTOR, TOKEN_SENSITIVE, CONTEXT_DEPENDENT, UNTESTED)
SMALL_EFFECT, SMALL_ALPHA = 0.2, 0.05  # Ma et al.'s weakly_token_driven (Cohen 1988's small effect)


class FeatureResult(NamedTuple):
    feature: int
    group: str
    """F_R or random (a control feature)."""
    triggers: tuple[int, ...]
    """Its trigger token ids, highest activation first."""
    reasoning_mean: float
    """Mean activation over ReasonScore's windows around the vocabulary words, in reasoning text."""
    baseline_mean: float
    """Mean over the windows at the insertion points, in the chat text without the insertions."""
    injected_mean: float
    """Mean over the windows around its injected triggers, in the chat text with them."""
    context_mean: float
    """Mean over the windows around its trigger occurrences in reasoning text (NaN: none found)."""
    ablated_mean: float
    """The same windows with the context around each trigger replaced by neutral chat text."""
    ratio: float
    """injected_mean / reasoning_mean (inf where only the injected mean is positive, NaN where neither is)."""
    cohens_d: float
    p_value: float
    injected_sites: int
    ablated_sites: int
    verdict: str


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean a - mean b) / sqrt((var a + var b) / 2), population variances (Ma et al.); +-inf for a difference with no
    spread (ours: their code returns 0 there, which would call a perfectly reliable detector context-dependent)."""
    diff = float(np.mean(a) - np.mean(b))
    pooled = math.sqrt((float(np.var(a)) + float(np.var(b))) / 2)
    if pooled > 0:
        return diff / pooled
    return math.copysign(math.inf, diff) if diff else 0.0


def injection_test(injected: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """(Cohen's d, the t-test's two-sided p) of injected against baseline values (NaN sites dropped); p is 1 where
    the test is undefined (fewer than two values on a side, or no spread at all)."""
    injected, baseline = injected[~np.isnan(injected)], baseline[~np.isnan(baseline)]
    if len(injected) < 2 or len(baseline) < 2:
        return 0.0, 1.0
    d = cohens_d(injected, baseline)
    if not np.var(injected) and not np.var(baseline):  # both sides constant: certain where they differ
        return d, 0.0 if d else 1.0
    with warnings.catch_warnings():  # near-constant samples (a feature silent at most sites): scipy warns, p stands
        warnings.simplefilter("ignore", RuntimeWarning)
        return d, float(stats.ttest_ind(injected, baseline).pvalue)


def ratio(injected_mean: float, reasoning_mean: float) -> float:
    if reasoning_mean > 0:
        return injected_mean / reasoning_mean
    return math.inf if injected_mean > 0 else math.nan


def verdict(d: float, p: float, injected_mean: float, reasoning_mean: float, sites: int, share: float = 0.5,
            effect: float = 0.8, alpha: float = 0.01) -> str:
    """The rule of this module's docstring."""
    if sites < 2:
        return UNTESTED
    if d >= effect and p < alpha and injected_mean >= share * reasoning_mean and injected_mean > 0:
        return TOKEN_DETECTOR
    if d >= SMALL_EFFECT and p < SMALL_ALPHA:
        return TOKEN_SENSITIVE
    return CONTEXT_DEPENDENT


def summarize(results: Iterable[FeatureResult]) -> dict[str, dict]:
    """Per group: features, tested (not untested), the count of each verdict, the share of token detectors among the
    tested, and the mean activation around triggers in reasoning context and after ablation."""
    groups: dict[str, list[FeatureResult]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    summary = {}
    for group, rows in groups.items():
        counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
        tested = len(rows) - counts[UNTESTED]
        ablated = [r for r in rows if r.ablated_sites]
        context = float(np.mean([r.context_mean for r in ablated])) if ablated else math.nan
        after = float(np.mean([r.ablated_mean for r in ablated])) if ablated else math.nan
        summary[group] = {"features": len(rows), "tested": tested, **counts,
                          "detector_share": counts[TOKEN_DETECTOR] / tested if tested else math.nan,
                          "context_mean": context, "ablated_mean": after,
                          "ablation_drop": 1 - after / context if ablated and context > 0 else math.nan}
    return summary


def to_frame(results: Iterable[FeatureResult], decode: Callable[[int], str]) -> pd.DataFrame:
    """One row per feature (falsify.csv): `triggers` as a JSON list of the trigger tokens' text (`decode(id)`),
    `trigger_ids` space-separated, then the numbers and the verdict."""
    rows = [{**r._asdict(), "triggers": json.dumps([decode(t) for t in r.triggers], ensure_ascii=False),
             "trigger_ids": " ".join(map(str, r.triggers))} for r in results]
    columns = ["feature", "group", "triggers", "trigger_ids", *FeatureResult._fields[3:]]
    return pd.DataFrame(rows, columns=columns)
