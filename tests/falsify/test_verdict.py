import json
import math

import numpy as np
import pytest
from scipy import stats

from reasoning_sae.falsify.verdict import (CONTEXT_DEPENDENT, TOKEN_DETECTOR, TOKEN_SENSITIVE, UNTESTED,
                                           FeatureResult, cohens_d, injection_test, ratio, summarize, to_frame, verdict)


def test_cohens_d_is_ma_et_als_pooled_population_sd():
    a, b = np.array([1.0, 2.0, 4.0]), np.array([0.0, 1.0, 0.0, 1.0])
    expected = (a.mean() - b.mean()) / math.sqrt((a.var() + b.var()) / 2)
    assert cohens_d(a, b) == pytest.approx(expected)
    assert cohens_d(np.full(3, 0.5), np.zeros(5)) == math.inf  # no spread: certain, not 0 as in their code
    assert cohens_d(np.zeros(3), np.zeros(5)) == 0.0


def test_injection_test_is_the_equal_variance_t_test_and_handles_degenerate_samples():
    a, b = np.array([1.0, 2.0, 4.0, np.nan]), np.array([0.0, 1.0, 0.0, 1.0])
    d, p = injection_test(a, b)
    assert p == pytest.approx(stats.ttest_ind(a[:3], b).pvalue) and d == pytest.approx(cohens_d(a[:3], b))
    assert injection_test(np.array([1.0]), b) == (0.0, 1.0)  # one site: no test
    assert injection_test(np.full(3, 0.5), np.zeros(4)) == (math.inf, 0.0)


def test_the_verdict_needs_a_large_reliable_effect_and_the_share_of_reasoning():
    assert verdict(1.2, 0.001, 0.3, 0.5, sites=6) == TOKEN_DETECTOR
    assert verdict(1.2, 0.001, 0.2, 0.5, sites=6) == TOKEN_SENSITIVE  # below half of the reasoning activation
    assert verdict(1.2, 0.001, 0.2, 0.5, sites=6, share=0.4) == TOKEN_DETECTOR
    assert verdict(0.7, 0.001, 0.3, 0.5, sites=6) == TOKEN_SENSITIVE  # a medium effect only
    assert verdict(1.2, 0.03, 0.3, 0.5, sites=6) == TOKEN_SENSITIVE  # not significant at 0.01
    assert verdict(0.1, 0.001, 0.3, 0.5, sites=6) == CONTEXT_DEPENDENT
    assert verdict(0.3, 0.2, 0.3, 0.5, sites=6) == CONTEXT_DEPENDENT
    assert verdict(5.0, 0.0, 0.3, 0.5, sites=1) == UNTESTED
    assert ratio(0.3, 0.6) == 0.5 and ratio(0.3, 0.0) == math.inf and math.isnan(ratio(0.0, 0.0))


def result(feature, group, verdict_, context=1.0, ablated=0.25, ablated_sites=3):
    return FeatureResult(feature, group, (5, 9), 0.4, 0.0, 0.3, context, ablated, 0.75, 2.0, 0.001, 6,
                         ablated_sites, verdict_)


def test_summaries_give_the_share_of_token_detectors_among_the_tested():
    results = [result(1, "F_R", TOKEN_DETECTOR), result(2, "F_R", CONTEXT_DEPENDENT, 2.0, 1.0),
               result(3, "F_R", UNTESTED, ablated_sites=0), result(4, "random", TOKEN_SENSITIVE)]
    summary = summarize(results)
    assert summary["F_R"]["features"] == 3 and summary["F_R"]["tested"] == 2
    assert summary["F_R"]["detector_share"] == 0.5 and summary["random"]["detector_share"] == 0.0
    assert summary["F_R"]["ablation_drop"] == pytest.approx(1 - 0.625 / 1.5)


def test_the_table_names_the_triggers_and_keeps_every_number():
    frame = to_frame([result(1, "F_R", TOKEN_DETECTOR)], lambda t: {5: " wait", 9: ","}[t])
    row = frame.iloc[0]
    assert json.loads(row["triggers"]) == [" wait", ","] and row["trigger_ids"] == "5 9"
    assert list(frame.columns[:4]) == ["feature", "group", "triggers", "trigger_ids"]
    assert row["verdict"] == TOKEN_DETECTOR and row["injected_mean"] == 0.3 and row["ablated_sites"] == 3
