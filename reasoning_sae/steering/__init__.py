"""Steering SAE features during generation: a rank-1 forward hook on the residual stream."""

from reasoning_sae.steering.hook import (MODES, POSITIONS, SITES, SteeringHook, SteeringVectors, check_site, steer,
                                        steering_vectors)

__all__ = ["MODES", "POSITIONS", "SITES", "SteeringHook", "SteeringVectors", "check_site", "steer", "steering_vectors"]
