"""ReasonScore: ranking SAE features by how specifically they fire around reasoning words."""

from reasoning_sae.score.diffmean import DiffMean
from reasoning_sae.score.reasonscore import ScorePass, reason_scores, score_pass, score_table, top_features

__all__ = ["DiffMean", "ScorePass", "reason_scores", "score_pass", "score_table", "top_features"]
