"""reasoning-sae: reproduce Galichin et al., "I Have Covered All the Bases Here" (arXiv 2503.18878).

The public API (DESIGN.md) is importable from here; heavier parts load on first use.
"""

from importlib.metadata import PackageNotFoundError, version

from reasoning_sae.errors import UserError
from reasoning_sae.lazy import exports

try:
    __version__ = version("reasoning-sae")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "LanguageModel", "ModelConfig", "SAEConfig", "SparseAutoencoder", "UserError", "__version__", "load_lm",
    "reason_scores", "steer",
]
__getattr__, __dir__ = exports(__name__, {
    "LanguageModel": "reasoning_sae.models", "ModelConfig": "reasoning_sae.models", "load_lm": "reasoning_sae.models",
    "SAEConfig": "reasoning_sae.sae", "SparseAutoencoder": "reasoning_sae.sae",
    "reason_scores": "reasoning_sae.score", "steer": "reasoning_sae.steering",
})
