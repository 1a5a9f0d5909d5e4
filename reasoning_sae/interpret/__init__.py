"""Feature interpretation (paper Sec. 4.2): per-feature dashboard records from one LM pass, rendered as static HTML."""

from reasoning_sae.interpret.features import FeatureStream, feature_records, logit_effects
from reasoning_sae.interpret.render import render_feature, render_index, write_site

__all__ = ["FeatureStream", "feature_records", "logit_effects", "render_feature", "render_index", "write_site"]
