"""Model diffing and cross-layer feature matching (paper Sec. 4.4, App. D.1): decoder presence, Hungarian
assignment, activation matching scores, and the small SAEs the diff stage trains for them."""

from reasoning_sae.diff.matching import (Assignment, MatchCounts, Presence, assign, class_counts, classify,
                                         matching_scores, presence, random_features)

__all__ = ["Assignment", "MatchCounts", "Presence", "assign", "class_counts", "classify", "matching_scores",
           "presence", "random_features"]
