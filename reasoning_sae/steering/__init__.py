"""Steering SAE features during generation: a rank-1 forward hook on the residual stream."""

from reasoning_sae.steering.hook import MODES, POSITIONS, SteeringHook, steer

__all__ = ["MODES", "POSITIONS", "SteeringHook", "steer"]
