"""Activations for SAE training, streamed from the LM over the corpus (SAELens' ActivationsStore, made exactly
resumable): sources yield activation vectors in a fixed order, and a mixing buffer fills, shuffles, serves
half and keeps half. Its whole state (source cursor, kept half, served count, RNG) goes into checkpoints."""

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch

from reasoning_sae.models import LanguageModel

log = logging.getLogger(__name__)


class LMSource:
    """Activation vectors of corpus sequences at `hook`, special tokens and sink positions dropped, cycling over the
    corpus."""

    def __init__(self, lm: LanguageModel, token_ids: np.ndarray, hook: str, ignore_token_ids, batch_sequences: int,
                 sink_positions: int = 0):
        self.lm, self.token_ids, self.hook = lm, token_ids, hook
        self.ignore_token_ids, self.sink_positions = ignore_token_ids, sink_positions
        self.batch_sequences = batch_sequences
        self.cursor = 0  # next sequence
        self.epoch = 0

    def read(self) -> torch.Tensor:
        """The next chunk of vectors [n, d_model] (one LM forward pass over `batch_sequences` sequences)."""
        if self.cursor >= len(self.token_ids):
            self.cursor, self.epoch = 0, self.epoch + 1
            log.info("training corpus exhausted: starting pass %d over it", self.epoch + 1)
        rows = self.token_ids[self.cursor : self.cursor + self.batch_sequences]
        self.cursor += len(rows)
        batch = next(self.lm.iter_activations(rows, self.hook, self.batch_sequences, self.ignore_token_ids,
                                              self.sink_positions))
        return batch.acts[batch.keep_BS]

    def state_dict(self) -> dict:
        return {"cursor": self.cursor, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.cursor, self.epoch = state["cursor"], state["epoch"]


class CacheSource:
    """The same vectors read back from an on-disk cache (a .npy written once by `write_cache`)."""

    def __init__(self, path: Path, chunk: int):
        self.acts_ND = np.load(path, mmap_mode="r")
        self.chunk = chunk
        self.cursor = 0
        self.epoch = 0

    def read(self) -> torch.Tensor:
        if self.cursor >= len(self.acts_ND):
            self.cursor, self.epoch = 0, self.epoch + 1
        chunk = torch.from_numpy(np.array(self.acts_ND[self.cursor : self.cursor + self.chunk]))
        self.cursor += len(chunk)
        return chunk

    state_dict = LMSource.state_dict
    load_state_dict = LMSource.load_state_dict


def write_cache(source: LMSource, path: Path) -> Path:
    """One pass of `source` over its corpus into `path` (.npy, the LM's dtype as float32/float16), atomically."""
    chunks = []
    source.cursor, source.epoch = 0, 0
    while source.epoch == 0 and source.cursor < len(source.token_ids):
        chunks.append(source.read().float().cpu())
    acts_ND = torch.cat(chunks).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, acts_ND)
    tmp.rename(path)
    source.cursor, source.epoch = 0, 0
    return path


class MixingBuffer:
    """Fill `n_batches` batches of vectors, shuffle, serve the first half, keep the rest, refill."""

    def __init__(self, source, batch_size: int, n_batches: int, seed: int):
        self.source, self.batch_size = source, batch_size
        self.capacity = max(2, n_batches) * batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.ready: torch.Tensor | None = None  # the half being served
        self.kept: torch.Tensor | None = None
        self.served = 0  # batches of `ready` handed out
        self.pending = 0  # handed out but not yet trained on (the trainer prefetches)

    def _refill(self) -> None:
        # Everything read is used: a chunk that overshoots the capacity stays in `kept` for the next fill.
        parts = [self.kept] if self.kept is not None else []
        have = sum(len(p) for p in parts)
        while have < self.capacity:
            chunk = self.source.read()
            parts.append(chunk)
            have += len(chunk)
        pool = torch.cat(parts)
        pool = pool[torch.randperm(len(pool), generator=self.generator).to(pool.device)]
        half = self.capacity // 2
        self.ready, self.kept, self.served = pool[:half], pool[half:], 0

    def next_batch(self) -> torch.Tensor:
        if self.ready is None or (self.served + 1) * self.batch_size > len(self.ready):
            self._refill()
        start = self.served * self.batch_size
        self.served += 1
        self.pending += 1
        return self.ready[start : start + self.batch_size]

    def consumed(self) -> None:
        """Called once a served batch has been trained on."""
        self.pending -= 1

    def state_dict(self) -> dict:
        # A batch prefetched but not trained on is served again after a resume: if it was the first batch of a
        # refill, the refilled state with nothing served is exactly the state after the last trained batch.
        return {"source": self.source.state_dict(), "generator": self.generator.get_state(),
                "ready": None if self.ready is None else self.ready.cpu(),
                "kept": None if self.kept is None else self.kept.cpu(), "served": self.served - self.pending}

    def load_state_dict(self, state: dict, device) -> None:
        self.source.load_state_dict(state["source"])
        self.generator.set_state(state["generator"])
        self.ready = None if state["ready"] is None else state["ready"].to(device)
        self.kept = None if state["kept"] is None else state["kept"].to(device)
        self.served, self.pending = state["served"], 0


class BufferStream(torch.utils.data.IterableDataset):
    """A mixing buffer's batches, endlessly (Lightning counts the steps)."""

    def __init__(self, buffer: MixingBuffer):
        self.buffer = buffer

    def __iter__(self):
        while True:
            yield self.buffer.next_batch()


class BufferDataModule(L.LightningDataModule):
    """What train.callbacks.BufferLink needs of a data module: `self.buffer` (a MixingBuffer, set by the subclass)
    and `mean_norm`."""

    buffer: MixingBuffer | None = None

    def train_dataloader(self):
        return torch.utils.data.DataLoader(BufferStream(self.buffer), batch_size=None, num_workers=0)

    def mean_norm(self) -> float:
        """Mean L2 norm of the vectors of the first buffer fill (the buffer then serves that fill)."""
        if self.buffer.ready is None:
            self.buffer._refill()
        return torch.cat([self.buffer.ready, self.buffer.kept]).float().norm(dim=-1).mean().item()


def shard_bounds(n_sequences: int, world: int) -> list[tuple[int, int]]:
    """The contiguous, disjoint [start, end) sequence range of each DDP rank (sizes differ by at most one)."""
    edges = np.cumsum([0, *(len(part) for part in np.array_split(np.arange(n_sequences), world))])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def rank_batch_size(batch_size: int, world: int) -> int:
    """Each rank's share of a global batch of activation vectors."""
    return batch_size // world


class ActivationDataModule(BufferDataModule):
    """Each DDP rank streams its own contiguous shard of the corpus and serves its share of the global batch;
    every rank's buffer state goes into the checkpoint (which rank 0 writes) and each rank restores its own."""

    def __init__(self, lm: LanguageModel, token_ids: np.ndarray, hook: str, batch_size: int, n_batches_in_buffer: int,
                 store_batch_sequences: int, ignore_token_ids, seed: int, cache_path: Path | None = None,
                 sink_positions: int = 0):
        super().__init__()
        self.lm, self.token_ids, self.hook = lm, token_ids, hook
        self.batch_size, self.n_batches_in_buffer = batch_size, n_batches_in_buffer
        self.store_batch_sequences, self.ignore_token_ids = store_batch_sequences, ignore_token_ids
        self.seed, self.cache_path, self.sink_positions = seed, cache_path, sink_positions
        self.buffer: MixingBuffer | None = None
        self._pending_state: dict | None = None

    def _rank_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def setup(self, stage: str | None = None) -> None:
        if self.buffer is not None:
            return
        rank, world = self._rank_world()
        if self.trainer and self.trainer.strategy.root_device != self.lm.device:  # a DDP rank: its own GPU
            self.lm.model.to(self.trainer.strategy.root_device)
        start, end = shard_bounds(len(self.token_ids), world)[rank]
        shard = self.token_ids[start:end]
        source = LMSource(self.lm, shard, self.hook, self.ignore_token_ids, self.store_batch_sequences,
                          self.sink_positions)
        if self.cache_path is not None:
            path = self.cache_path.with_name(f"{self.cache_path.stem}-rank{rank}of{world}.npy")
            if not path.exists():
                log.info("writing activation cache %s", path)
                write_cache(source, path)
            source = CacheSource(path, chunk=self.store_batch_sequences * shard.shape[1])
        batch = rank_batch_size(self.batch_size, world)
        self.buffer = MixingBuffer(source, batch, self.n_batches_in_buffer, self.seed + rank)
        if self._pending_state is not None:
            self.buffer.load_state_dict(self._pending_state, self.lm.device)
            self._pending_state = None

    def state_dict(self) -> dict:
        # Lightning asks every rank for this while saving a checkpoint and writes rank 0's: gather them all there.
        state = {} if self.buffer is None else self.buffer.state_dict()
        rank, world = self._rank_world()
        if world == 1 or not torch.distributed.is_initialized():
            return state
        states = [None] * world
        torch.distributed.all_gather_object(states, state)
        return {"world_size": world, "ranks": states}

    def load_state_dict(self, state: dict) -> None:
        if "ranks" in state:
            rank, world = self._rank_world()
            if state["world_size"] != world:
                from reasoning_sae.errors import UserError

                raise UserError(f"the checkpoint was written by {state['world_size']} DDP ranks, this run has {world}: "
                                f"resume with the same trainer.devices (and trainer.num_nodes)")
            state = state["ranks"][rank]
        if not state:
            return
        if self.buffer is None:
            self._pending_state = state
        else:
            self.buffer.load_state_dict(state, self.lm.device)
