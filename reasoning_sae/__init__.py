"""reasoning-sae: reproduce Galichin et al., "I Have Covered All the Bases Here" (arXiv 2503.18878).

The public API (DESIGN.md) is importable from here; heavier parts load on first use.
"""

from importlib.metadata import PackageNotFoundError, version

from reasoning_sae.errors import UserError
from reasoning_sae.models import LanguageModel, ModelConfig, load_lm
from reasoning_sae.sae import SAEConfig, SparseAutoencoder
from reasoning_sae.score import reason_scores
from reasoning_sae.steering import steer

try:
    __version__ = version("reasoning-sae")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "LanguageModel", "ModelConfig", "SAEConfig", "SparseAutoencoder", "UserError", "__version__", "load_lm",
    "reason_scores", "steer",
]
