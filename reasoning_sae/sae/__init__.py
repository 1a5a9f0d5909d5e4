"""Sparse autoencoders in the SAELens format: one file per architecture, presets for initialisation."""

from reasoning_sae.sae import standard, topk  # noqa: F401  (registers the architectures)
from reasoning_sae.sae.base import SparseAutoencoder, TrainOutput, architecture_class
from reasoning_sae.sae.config import SAEConfig
from reasoning_sae.sae.init import initialize

ARCHITECTURES = SparseAutoencoder.registry

__all__ = ["ARCHITECTURES", "SAEConfig", "SparseAutoencoder", "TrainOutput", "architecture_class", "initialize"]
