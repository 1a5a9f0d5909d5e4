"""Do the features of F_R encode reasoning, or detect a few tokens? Token-injection falsification after Ma et al. 2026,
"Do Sparse Autoencoders Identify Reasoning Features in Language Models?" (arXiv 2601.05679, code:
github.com/GeorgeMLP/reasoning-probing).

For each feature: its trigger tokens (the distinct tokens at its top-activating positions), inserted into held-out
chat text; its activation there (windows around the inserted tokens) against genuine reasoning (ReasonScore's windows
around the vocabulary words) and against the same chat without them; and the same triggers inside reasoning text
with the context around them replaced by neutral chat text (context ablation). Every feature is scored from one LM
pass over those texts (`experiment.falsify`); the rule is `verdict.verdict`."""

from reasoning_sae.falsify.experiment import Falsification, Settings, falsify, random_controls
from reasoning_sae.falsify.verdict import (CONTEXT_DEPENDENT, TOKEN_DETECTOR, TOKEN_SENSITIVE, UNTESTED, VERDICTS,
                                           FeatureResult, summarize, to_frame)

__all__ = ["CONTEXT_DEPENDENT", "TOKEN_DETECTOR", "TOKEN_SENSITIVE", "UNTESTED", "VERDICTS", "Falsification",
           "FeatureResult", "Settings", "falsify", "random_controls", "summarize", "to_frame"]
