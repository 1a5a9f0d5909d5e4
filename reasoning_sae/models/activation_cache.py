"""Hook activations of a token array kept on disk, so that stages reading the same tokens at the same hook (score,
then interpret) run the model once over them. A hit yields the bytes the model produced, batch by batch, so a stage
gives the same result with or without the cache.

The key covers what the activations depend on: the model (name, revision, its config, the weights of the layers up
to the hook), dtype, device type, hook, the token ids and the batching (batch shape changes the last bits of CPU
matmuls). Files are written whole and renamed into place; a size limit keeps paper-scale passes off the disk."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

KEY = "acts"


class ActivationCache:
    """A folder of `<key>.safetensors` files, each one pass's activations [n_sequences, seq, d_model]."""

    def __init__(self, folder: Path | str, max_bytes: int):
        self.folder, self.max_bytes = Path(folder), int(max_bytes)

    def key(self, lm, token_ids: np.ndarray, hook: str, batch_sequences: int) -> str:
        point = lm.hook_point(hook)
        digest = hashlib.sha256(json.dumps({
            "model": lm.config.name, "revision": lm.config.revision, "dtype": str(lm.dtype),
            "device": lm.device.type, "hook": hook, "batch_sequences": batch_sequences,
            "shape": list(token_ids.shape), "config": lm.model.config.to_dict()}, sort_keys=True, default=str).encode())
        digest.update(np.ascontiguousarray(token_ids, dtype=np.int64).tobytes())
        # The weights enter through two sums per tensor: cheap even for an 8B model on a GPU, and any real change
        # of a checkpoint (another fine-tune, a re-quantization) moves them.
        tensors = [lm.model.get_input_embeddings().weight,
                   *(t for layer in lm.layers[: point.last_layer_needed + 1] for t in layer.state_dict().values())]
        with torch.no_grad():
            sums = [(float(t.double().sum()), float(t.double().abs().sum())) for t in tensors]
        digest.update(json.dumps(sums).encode())
        return digest.hexdigest()[:32]

    def fits(self, n_values: int, dtype: torch.dtype) -> bool:
        return self.max_bytes > 0 and n_values * dtype.itemsize <= self.max_bytes

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def read(self, key: str, start: int, stop: int, device) -> torch.Tensor:
        with safe_open(self.path(key), framework="pt") as handle:
            return handle.get_slice(KEY)[start:stop].to(device)

    def write(self, key: str, acts_NSD: torch.Tensor) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{key}.tmp-{os.getpid()}"
        try:
            save_file({KEY: acts_NSD.contiguous()}, str(tmp))
            os.replace(tmp, self.path(key))
        except OSError:  # a full disk or a read-only folder costs the reuse, not the stage
            tmp.unlink(missing_ok=True)
