"""Steering SAE features during generation: a rank-1 forward hook on the residual stream."""

from reasoning_sae.lazy import exports
from reasoning_sae.steering.modes import MODES, POSITIONS, SITES, VECTORS

__all__ = ["MODES", "POSITIONS", "SITES", "VECTORS", "SteeringHook", "SteeringVectors", "check_clamp", "check_site",
           "steer", "steer_vector", "steering_vectors", "update_norm", "vector_steering"]
__getattr__, __dir__ = exports(__name__, {name: "reasoning_sae.steering.hook" for name in __all__[4:]})
