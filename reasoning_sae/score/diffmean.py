"""DiffMean (Venhoff et al. 2025, "Understanding Reasoning in Thinking Language Models via Steering Vectors", arXiv
2506.18167: a difference-of-means steering vector): the mean activation at the SAE's hook over ReasonScore's
reasoning windows D_R^W minus the mean over the other kept tokens D_¬R^W, the same sets ReasonScore's feature means
use (set_masks rows 0 and 1). Its sums ride ReasonScore's one pass over the scoring corpus: no extra LM pass.

The vector is stored unit-free (the raw difference); the evaluate stage scales it to the norm of a feature's update
(steering.update_norm) before it steers."""

from pathlib import Path
from typing import NamedTuple

import torch

from reasoning_sae.errors import UserError

TENSOR = "diffmean"


class DiffMean(NamedTuple):
    vector_D: torch.Tensor
    """mean(D_R^W) - mean(D_¬R^W), float32 [d_model]."""
    tokens_pos: int
    tokens_neg: int
    hook: str


def diff_mean(sums_2D: torch.Tensor, counts_2: torch.Tensor, hook: str) -> DiffMean:
    """The vector from summed hook activations over D_R^W and D_¬R^W (rows 0 and 1) and their token counts."""
    counts = counts_2.double().cpu()
    if counts.min() == 0:
        raise UserError("DiffMean needs tokens inside and outside the reasoning windows, but one set is empty: "
                        "check the vocabulary against the corpus, or narrow score.window")
    means_2D = sums_2D.double().cpu() / counts[:, None]
    return DiffMean((means_2D[0] - means_2D[1]).float(), int(counts[0]), int(counts[1]), hook)


def save_diffmean(diffmean: DiffMean, path: Path) -> None:
    """One tensor `diffmean` [d_model] float32; the hook and the token counts in the metadata (strings). Written here
    in the safetensors layout (8-byte header length, JSON header, data) rather than by safetensors' save_file, whose
    metadata order changes from run to run: the same vector gives the same bytes (MANIFEST.sha256, determinism)."""
    import json
    import struct

    data = diffmean.vector_D.detach().float().cpu().contiguous().numpy().astype("<f4").tobytes()
    metadata = {"hook": diffmean.hook, "tokens_pos": str(diffmean.tokens_pos), "tokens_neg": str(diffmean.tokens_neg),
                "definition": "mean over ReasonScore's reasoning windows minus mean over the other kept tokens"}
    header = json.dumps({"__metadata__": metadata, TENSOR: {"dtype": "F32", "shape": [len(diffmean.vector_D)],
                                                            "data_offsets": [0, len(data)]}},
                        sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # safetensors pads its header to 8 bytes
    Path(path).write_bytes(struct.pack("<Q", len(header)) + header + data)
