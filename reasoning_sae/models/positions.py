"""Which token positions of a batch count: special tokens never do, nor the first `sink_positions` of each sequence.

Position 0 of a packed sequence is an attention sink (Xiao et al. 2023): its residual stream has a norm several
times the others' whatever the token, so SAE latents that fire there encode the position, not the text. SAELens and
dictionary_learning drop BOS (and dictionary_learning high-norm tokens) for the same reason; the paper's released code
packs without BOS and drops only the BOS/EOS ids, so its position 0 is an ordinary token in the middle of a document
(`model.sink_positions=0` reproduces that)."""

import torch


def keep_mask(ids_BS: torch.Tensor, ignore_token_ids, sink_positions: int = 0) -> torch.Tensor:
    """[B, S] bool: True where a position counts (not an ignored id, not among the first `sink_positions`)."""
    ignore = torch.as_tensor(sorted(ignore_token_ids), dtype=ids_BS.dtype, device=ids_BS.device)
    keep_BS = ~torch.isin(ids_BS, ignore)
    if sink_positions > 0:
        keep_BS[:, :sink_positions] = False
    return keep_BS
