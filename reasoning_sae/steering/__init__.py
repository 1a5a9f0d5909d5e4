"""Steering SAE features during generation: a rank-1 forward hook on the residual stream."""

from reasoning_sae.lazy import exports
from reasoning_sae.steering.modes import MODES, POSITIONS, SITES

__all__ = ["MODES", "POSITIONS", "SITES", "SteeringHook", "SteeringVectors", "check_site", "steer", "steering_vectors"]
__getattr__, __dir__ = exports(__name__, {name: "reasoning_sae.steering.hook" for name in __all__[3:]})
