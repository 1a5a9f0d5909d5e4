"""ReasonScore: ranking SAE features by how specifically they fire around reasoning words."""

from reasoning_sae.score.reasonscore import reason_scores, score_table, top_features

__all__ = ["reason_scores", "score_table", "top_features"]
