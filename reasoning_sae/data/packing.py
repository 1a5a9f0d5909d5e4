"""Tokenize documents and pack them into fixed-length sequences (as SAELens' tokenize_and_concatenate does):
documents joined by a separator token, cut into `context_size` chunks, optionally each starting with BOS."""

import datasets
import numpy as np

from reasoning_sae.errors import UserError


def check_context_size(context_size: int) -> None:
    if context_size < 2:
        raise UserError(f"context_size={context_size} is too small: set data.context_size to 2 or more")


def _chunk(ids_list: list[list[int]], context_size: int, separator_id: int | None, bos_id: int | None):
    sep = [] if separator_id is None else [separator_id]
    flat = np.fromiter((t for ids in ids_list for t in (*ids, *sep)), dtype=np.int64)
    body = context_size - (bos_id is not None)
    n = len(flat) // body
    chunks_BS = flat[: n * body].reshape(n, body)
    if bos_id is not None:
        chunks_BS = np.concatenate([np.full((n, 1), bos_id, dtype=np.int64), chunks_BS], axis=1)
    return chunks_BS


def pack(
    texts: datasets.Dataset,
    tokenizer,
    context_size: int,
    separator_id: int | None,
    bos_id: int | None = None,
    batch_size: int = 1000,
    num_proc: int | None = None,
    desc: str = "pack",
) -> datasets.Dataset:
    """A dataset with one column `input_ids` of `context_size` tokens per row, from a `text` column.

    Each map batch packs its own documents and drops its remainder (under one sequence per batch of
    `batch_size` documents), which keeps the work streaming and parallel at paper scale."""
    check_context_size(context_size)

    def tokenize_and_chunk(batch):
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"input_ids": _chunk(ids, context_size, separator_id, bos_id).tolist()}

    packed = texts.map(
        tokenize_and_chunk,
        batched=True,
        batch_size=batch_size,
        remove_columns=texts.column_names,
        num_proc=num_proc,
        desc=desc,
    )
    return packed.cast_column("input_ids", datasets.Sequence(datasets.Value("int32")))
