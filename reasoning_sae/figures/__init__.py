"""Every figure and table of the paper from the pipeline's artifacts, the report beside the paper's numbers, and
`verify` (python -m reasoning_sae.figures.verify). The `figures` stage (reasoning_sae.stages.figures) runs them."""

from reasoning_sae.figures.build import build_all, load_items
from reasoning_sae.figures.common import Artifacts, Item

__all__ = ["Artifacts", "Item", "build_all", "load_items"]
