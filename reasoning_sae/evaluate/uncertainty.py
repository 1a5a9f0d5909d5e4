"""95% intervals for the evaluation tables: a bootstrap over problems with each problem's attempts resampled inside
it (two-stage, "nested"), and for a steered-vs-baseline difference the same resampling paired on the problems both
cells ran, with a sign-flip permutation test on the per-problem differences.

Each input is a [problems, attempts] array (`values_PA`): one row per problem, one column per sampled answer
(correctness 0/1, or a thinking length). scipy's `bootstrap` resamples one level only, so the two-stage resampling is
written here with numpy; the paired test is scipy's `permutation_test`."""

from typing import NamedTuple

import numpy as np
from scipy import stats

from reasoning_sae.errors import UserError

MIN_RESAMPLES = 100


class Interval(NamedTuple):
    """A mean with its percentile bootstrap interval."""

    mean: float
    low: float
    high: float


class Difference(NamedTuple):
    """b - a on the same problems: the mean difference, its paired bootstrap interval and the paired test's p."""

    delta: float
    low: float
    high: float
    p_value: float
    level: float = 0.95

    @property
    def distinguishable(self) -> bool:
        """Larger than the resampling noise at this level: the interval excludes 0 and the paired test agrees
        (p < 1 - level). Both, because with very few problems the percentile interval is too narrow: two problems
        that moved the same way give an interval clear of 0, yet the sign-flip test's p is 0.5."""
        return (self.low > 0 or self.high < 0) and self.p_value < 1 - self.level


def check_settings(resamples: int, level: float) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < MIN_RESAMPLES:
        raise UserError(f"bootstrap resamples={resamples!r}: give a whole number >= {MIN_RESAMPLES} (1000 is usual; "
                        f"fewer makes the interval's ends noise)")
    if not 0 < level < 1:
        raise UserError(f"interval level={level!r}: give a number strictly between 0 and 1 (e.g. 0.95)")


def as_problems(values) -> np.ndarray:
    """`values` as a float [problems, attempts] array (a 1-d input is one attempt per problem)."""
    values_PA = np.asarray(values, dtype=np.float64)
    values_PA = values_PA[:, None] if values_PA.ndim == 1 else values_PA
    if values_PA.ndim != 2 or values_PA.size == 0:
        raise UserError(f"an interval needs a [problems, attempts] table of values, got shape {values_PA.shape}")
    return values_PA


def resampled_means(values_PA: np.ndarray, resamples: int, rng: np.random.Generator,
                    problems_XP: np.ndarray | None = None) -> np.ndarray:
    """The mean of `resamples` two-stage resamples: problems with replacement (rows `problems_XP` when given, so
    two cells can share them), then each drawn problem's attempts with replacement."""
    n_problems, n_attempts = values_PA.shape
    if problems_XP is None:
        problems_XP = rng.integers(0, n_problems, size=(resamples, n_problems))
    attempts_XPA = rng.integers(0, n_attempts, size=(resamples, n_problems, n_attempts))
    return values_PA[problems_XP[..., None], attempts_XPA].mean(axis=(1, 2))


def interval(values, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Interval:
    """The mean of `values` [problems, attempts] and its two-stage bootstrap percentile interval."""
    check_settings(resamples, level)
    values_PA = as_problems(values)
    means_X = resampled_means(values_PA, resamples, np.random.default_rng(seed))
    low, high = np.quantile(means_X, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(values_PA.mean()), float(low), float(high))


def paired_difference(a, b, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Difference:
    """b - a for two cells on the same problems (rows aligned): the difference of means, its paired two-stage
    bootstrap interval (the same problems drawn for both), and the two-sided sign-flip permutation test of the
    per-problem mean differences."""
    check_settings(resamples, level)
    a_PA, b_PA = as_problems(a), as_problems(b)
    if len(a_PA) != len(b_PA):
        raise UserError(f"a paired difference needs the same problems in both cells: {len(a_PA)} vs {len(b_PA)} "
                        f"(run both cells with the same benchmark.limit)")
    rng = np.random.default_rng(seed)
    problems_XP = rng.integers(0, len(a_PA), size=(resamples, len(a_PA)))
    delta_X = resampled_means(b_PA, resamples, rng, problems_XP) - resampled_means(a_PA, resamples, rng, problems_XP)
    low, high = np.quantile(delta_X, [(1 - level) / 2, (1 + level) / 2])
    return Difference(float(b_PA.mean() - a_PA.mean()), float(low), float(high),
                      sign_flip_p(b_PA.mean(axis=1) - a_PA.mean(axis=1), resamples, seed), level)


def sign_flip_p(diffs_P: np.ndarray, resamples: int, seed: int) -> float:
    """Two-sided p of a zero mean difference under random sign flips (exact when 2**problems <= resamples). One
    problem has two sign patterns, both as extreme as the data: p = 1 (scipy's test wants at least two)."""
    if not np.any(diffs_P) or len(diffs_P) < 2:
        return 1.0
    result = stats.permutation_test((diffs_P,), np.mean, permutation_type="samples", n_resamples=resamples,
                                    alternative="two-sided", random_state=seed)
    return float(result.pvalue)
