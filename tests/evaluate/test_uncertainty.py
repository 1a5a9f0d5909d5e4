import numpy as np
import pytest
from scipy import stats

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.uncertainty import interval, paired_difference


def test_constant_values_have_a_zero_width_interval():
    assert interval(np.ones((12, 4))) == (1.0, 1.0, 1.0)


def test_one_attempt_per_problem_matches_scipys_percentile_bootstrap():
    values_P = np.random.default_rng(1).binomial(1, 0.4, size=80).astype(float)
    ours = interval(values_P, resamples=4000, seed=2)
    ref = stats.bootstrap((values_P,), np.mean, n_resamples=4000, method="percentile", random_state=3)
    assert ours.mean == pytest.approx(values_P.mean())
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.02)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.02)


def test_attempts_are_resampled_inside_each_problem():
    # every problem is solved in one attempt of two: resampling problems alone would see no spread at all
    values_PA = np.tile([0.0, 1.0], (30, 1))
    result = interval(values_PA, resamples=2000)
    assert result.mean == 0.5 and result.low < 0.45 and result.high > 0.55


def test_a_large_paired_effect_is_distinguishable_and_a_null_one_is_not():
    rng = np.random.default_rng(0)
    a_PA = rng.binomial(1, 0.2, size=(40, 2)).astype(float)
    big = paired_difference(a_PA, np.ones_like(a_PA), resamples=1000)
    assert big.delta == pytest.approx(1 - a_PA.mean()) and big.distinguishable and big.p_value < 0.01
    same = paired_difference(a_PA, a_PA, resamples=1000)  # attempts still vary: an interval around 0
    assert same.delta == 0.0 and same.p_value == 1.0 and same.low < 0 < same.high and not same.distinguishable


def test_pairing_on_problems_narrows_the_interval():
    # b is a shifted by the same small amount on every problem, with wide spread between problems
    a_P = np.random.default_rng(4).uniform(0, 100, size=50)
    paired = paired_difference(a_P, a_P + 1.0, resamples=1000)
    assert paired.low == pytest.approx(1.0) and paired.high == pytest.approx(1.0) and paired.p_value < 0.01


@pytest.mark.parametrize("kwargs, fix", [
    ({"resamples": 99}, "resamples=99: give a whole number >= 100"),
    ({"resamples": 100.0}, "give a whole number >= 100"),
    ({"level": 1.0}, "strictly between 0 and 1"),
])
def test_bad_settings_are_one_line_errors(kwargs, fix):
    with pytest.raises(UserError, match=fix):
        interval(np.ones(5), **kwargs)


def test_a_paired_difference_needs_the_same_problems():
    with pytest.raises(UserError, match="same problems in both cells: 3 vs 4"):
        paired_difference(np.ones(3), np.ones(4))
    with pytest.raises(UserError, match="shape"):
        interval(np.ones((0, 2)))


def test_two_problems_moving_together_are_not_distinguishable_whatever_the_interval():
    """The interval of 2 problems that both moved is clear of 0, but the sign-flip test's p is 0.5."""
    diff = paired_difference(np.zeros((2, 1)), np.ones((2, 1)), resamples=200)
    assert diff.low > 0 and diff.p_value == pytest.approx(0.5) and not diff.distinguishable


def test_one_problem_gives_an_interval_and_no_distinguishable_difference():
    """The paper miniature runs 1 problem per benchmark: the tables must still build."""
    diff = paired_difference(np.zeros((1, 2)), np.ones((1, 2)), resamples=100)
    assert diff.delta == 1.0 and diff.p_value == 1.0 and not diff.distinguishable
    assert interval(np.ones((1, 2)), resamples=100).mean == 1.0
