"""Steering vectors from files: a `.safetensors` holding one 1-D tensor (its metadata may name the `hook`; the score
stage's `diffmean.safetensors` does) or a `.npy` array. Read and checked before any model loads."""

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from reasoning_sae.errors import UserError

SUFFIXES = (".safetensors", ".npy")


class SteeringVector(NamedTuple):
    vector_D: torch.Tensor
    """The direction, float32 [d_model] as stored (not normalised)."""
    hook: str
    """Where it is added: blocks.L.hook_resid_post."""
    metadata: dict[str, str]
    """The file's safetensors metadata ({} for .npy)."""


def load_vector(path, hook: str | None = None) -> SteeringVector:
    """The vector in `path`; `hook` overrides (for .npy: gives) the hook the file records."""
    path = Path(path).expanduser()
    if path.suffix not in SUFFIXES:
        raise UserError(f"steering vector {path}: give a .safetensors or .npy file")
    if not path.is_file():
        raise UserError(f"steering vector {path} does not exist: run the score stage (it writes "
                        f"artifacts/<experiment>/score/diffmean.safetensors) or fix the path")
    metadata: dict[str, str] = {}
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with safe_open(str(path), framework="np") as f:
                names, metadata = list(f.keys()), f.metadata() or {}
                if len(names) != 1:
                    raise ValueError(f"{len(names)} tensors where one is expected")
                array = f.get_tensor(names[0])
    except (OSError, ValueError, TypeError, SafetensorError) as err:
        raise UserError(f"steering vector {path} is unreadable ({err}): write one 1-D float tensor") from None
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
        raise UserError(f"steering vector {path} holds a {array.dtype} array of shape {array.shape}: write one 1-D "
                        f"float tensor of d_model numbers")
    hook = hook or metadata.get("hook")
    if not hook:
        raise UserError(f"steering vector {path} names no hook: give vector_hook=blocks.L.hook_resid_post")
    return SteeringVector(torch.from_numpy(array.astype(np.float32)), hook, metadata)
