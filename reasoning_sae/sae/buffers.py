"""Reusable scratch tensors for the hand-written training steps (standard.py, topk.py).

On CPU a fresh [batch, d_sae] tensor costs far more than a pass over it (its pages are faulted in on first
write: glibc hands blocks that large straight back to the kernel), so the steps take their latents and scratch
from a small per-module pool. A buffer is reused only when nothing else holds its storage. This reads a private
PyTorch counter (`_storage_Use_Count`); if it is gone, the pool falls back to plain allocation."""

import torch


def _storage_use_count(t: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


try:
    _FREE_USE_COUNT = _storage_use_count(torch.empty(1))  # a tensor that nothing else references
except (AttributeError, RuntimeError):  # private API gone: never reuse, always allocate
    _FREE_USE_COUNT = None


class BufferPool:
    """Reusable scratch tensors. A buffer is handed out again only when the pool holds the sole reference to its
    storage: whatever was built on it (a returned tensor, a tensor saved for backward, a view) keeps it busy."""

    def __init__(self, per_name: int = 2):
        self.per_name = per_name
        self.buffers: dict[str, list[torch.Tensor]] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of `shape` (dtype and device of `like`) sharing no live storage."""
        if _FREE_USE_COUNT is None or like.device.type != "cpu":  # other allocators cache blocks themselves
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        shape = tuple(shape)
        pool = self.buffers.setdefault(name, [])
        for base in pool:
            if base.shape == shape and base.dtype == like.dtype and _storage_use_count(base) == _FREE_USE_COUNT:
                break
        else:
            base = torch.empty(shape, dtype=like.dtype, device=like.device)
            pool.append(base)
            del pool[:-self.per_name]  # busy buffers dropped here live on with their holders
        # a fresh TensorImpl on the storage (not `base` itself, not a view): what the caller builds on it counts
        return torch.empty(0, dtype=base.dtype, device=base.device).set_(base.untyped_storage(), 0, shape)

    # copies and pickles of the module start with an empty pool
    def __deepcopy__(self, memo):
        return BufferPool(self.per_name)

    def __getstate__(self):
        return {"per_name": self.per_name, "buffers": {}}


def scratch_pool(module: torch.nn.Module) -> BufferPool:
    """The module's training-step buffers (not state: copies and pickles of the module start without them)."""
    pool = module.__dict__.get("_scratch_pool")
    if pool is None:
        pool = module.__dict__["_scratch_pool"] = BufferPool()
    return pool
