"""Sparse autoencoders in the SAELens format: one file per architecture, presets for initialisation."""

from reasoning_sae.sae.base import (
    ARCHITECTURES,
    SparseAutoencoder,
    TrainOutput,
    architecture_class,
    register_sae_class,
)
from reasoning_sae.sae.batchtopk import BatchTopKSAE
from reasoning_sae.sae.config import SAEConfig
from reasoning_sae.sae.init import initialize
from reasoning_sae.sae.jumprelu import JumpReLUSAE
from reasoning_sae.sae.matryoshka import MatryoshkaBatchTopKSAE
from reasoning_sae.sae.standard import StandardSAE
from reasoning_sae.sae.topk import TopKSAE

# Every architecture, registered here and only here (cfg.json's "architecture" -> class), as SAELens does.
register_sae_class("standard", StandardSAE)
register_sae_class("topk", TopKSAE)
register_sae_class("jumprelu", JumpReLUSAE)
register_sae_class("batchtopk", BatchTopKSAE)
register_sae_class("matryoshka_batchtopk", MatryoshkaBatchTopKSAE)

__all__ = ["ARCHITECTURES", "BatchTopKSAE", "JumpReLUSAE", "MatryoshkaBatchTopKSAE", "SAEConfig", "SparseAutoencoder",
           "StandardSAE", "TopKSAE", "TrainOutput", "architecture_class", "initialize", "register_sae_class"]
