"""Several SAEs from one language-model pass (`train.saes`), as SAELens' multi_sae_training_runner and EleutherAI's
sparsify train theirs: one LM forward per batch of sequences, stopped after the deepest layer any SAE reads, feeds
every SAE; each SAE keeps its own mixing buffer (seeded as a run of its own), its own optimizer settings, schedule
and gradient clipping, so it trains on the same batches in the same order, to the same weights, as it would alone.

The members are SAEModules; the host module steps them together: one Adam over one parameter group per SAE (the
fused step works group by group, so each group is the SAE's own Adam), one LR lambda per group, and the gradient
norm clipped per SAE (SAELens clips each SAE; Lightning's built-in clipping would clip the norm over all of them)."""

import re
from collections.abc import Iterable
from typing import NamedTuple

import lightning as L
import numpy as np
import torch

from reasoning_sae.errors import UserError
from reasoning_sae.train.callbacks import BufferLink
from reasoning_sae.train.config import TrainConfig
from reasoning_sae.train.module import NonFiniteTraining, SAEModule, lr_factor
from reasoning_sae.train.store import ActivationDataModule, MixingBuffer, rank_batch_size, shard_bounds

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Settings of the pass itself: every SAE of a pass shares the LM reads, the steps and the held-out split.
SHARED = ("training_tokens", "batch_size_tokens", "store_batch_size_prompts", "eval_sequences", "checkpoint_every")


class SAESpec(NamedTuple):
    """One SAE of a multi-SAE pass."""

    name: str
    """Its folder under train/saes/ and the prefix of its logged metrics."""
    layer: int
    hook: str
    tc: TrainConfig


def parse_saes(entries: Iterable, sae: dict, main_tc: TrainConfig, main_layer: int,
               n_layers: int | None) -> list[SAESpec]:
    """The `train.saes` entries (each `name`, optionally `layer`, and any `sae.*` settings it changes) as checked
    specs: one line naming the entry and the fix for a bad one."""
    from reasoning_sae.models import resid_post

    specs, seen = [], set()
    for i, entry in enumerate(entries or []):
        if not isinstance(entry, dict) or "name" not in entry:
            raise UserError(f"train.saes[{i}]={entry!r}: give a mapping with a name, e.g. {{name: L13, layer: 13}}")
        name = str(entry["name"])
        if not NAME.fullmatch(name) or name == "sae":
            raise UserError(f"train.saes[{i}].name={name!r}: use letters, digits, _, . and - (a folder name), not sae")
        if name in seen:
            raise UserError(f"train.saes names {name!r} twice: give every SAE of the pass its own name")
        seen.add(name)
        layer = entry.get("layer", main_layer)
        if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0 or (
                n_layers is not None and layer >= n_layers):
            span = f"0-{n_layers - 1}" if n_layers is not None else "a whole number >= 0"
            raise UserError(f"train.saes entry {name}: layer={layer!r} is out of range: give {span}")
        overrides = {k: v for k, v in entry.items() if k not in ("name", "layer")}
        try:
            tc = TrainConfig.from_mapping({**sae, **overrides})
        except UserError as err:
            raise UserError(f"train.saes entry {name}: {err}") from None
        for key in SHARED:
            if getattr(tc, key) != getattr(main_tc, key):
                raise UserError(f"train.saes entry {name} sets {key}, which every SAE of one pass shares: set "
                                f"sae.{key} for all of them, not in an entry")
        specs.append(SAESpec(name, layer, resid_post(layer), tc))
    return specs


# --- data ------------------------------------------------------------------------------------------------------


class SharedLMReader:
    """One LM forward per chunk of sequences for all hooks; a chunk is kept until every member source has read it
    (members with larger buffers read ahead). Chunk c is what an LMSource's c-th read returns, cycling the corpus."""

    def __init__(self, lm, token_ids: np.ndarray, hooks: list[str], ignore_token_ids, batch_sequences: int,
                 sink_positions: int = 0):
        self.lm, self.token_ids, self.hooks = lm, token_ids, hooks
        self.ignore_token_ids, self.sink_positions = ignore_token_ids, sink_positions
        self.batch_sequences = batch_sequences
        self.n_chunks = -(-len(token_ids) // batch_sequences)
        self.chunks: dict[int, dict[str, torch.Tensor]] = {}
        self.members: list["MemberSource"] = []

    def read(self, chunk: int, hook: str) -> torch.Tensor:
        if chunk not in self.chunks:
            start = (chunk % self.n_chunks) * self.batch_sequences
            rows = self.token_ids[start : start + self.batch_sequences]
            batch = next(self.lm.iter_activations(rows, self.hooks, self.batch_sequences, self.ignore_token_ids,
                                                  self.sink_positions))
            self.chunks[chunk] = {h: batch.acts[h][batch.keep_BS] for h in self.hooks}
        acts = self.chunks[chunk][hook]
        oldest = min(m.chunk for m in self.members) if self.members else chunk + 1
        for c in [c for c in self.chunks if c < max(oldest, 0) and c != chunk]:
            del self.chunks[c]
        return acts


class MemberSource:
    """One SAE's view of the shared reader: what an LMSource at its hook would read, in the same order."""

    def __init__(self, reader: SharedLMReader, hook: str):
        self.reader, self.hook, self.chunk = reader, hook, 0
        reader.members.append(self)

    def read(self) -> torch.Tensor:
        self.chunk += 1
        return self.reader.read(self.chunk - 1, self.hook)

    def state_dict(self) -> dict:
        return {"chunk": self.chunk}

    def load_state_dict(self, state: dict) -> None:
        self.chunk = state["chunk"]


class BufferGroup:
    """The mixing buffers of all SAEs, used where a data module has one: each next_batch is a tuple of batches."""

    def __init__(self, buffers: list[MixingBuffer]):
        self.buffers = buffers

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        return tuple(b.next_batch() for b in self.buffers)

    def consumed(self) -> None:
        for b in self.buffers:
            b.consumed()

    def state_dict(self) -> dict:
        return {"buffers": [b.state_dict() for b in self.buffers]}

    def load_state_dict(self, state: dict, device) -> None:
        for b, s in zip(self.buffers, state["buffers"], strict=True):
            b.load_state_dict(s, device)


class MultiActivationDataModule(ActivationDataModule):
    """ActivationDataModule for several SAEs: each DDP rank streams its shard once for every hook, and every SAE
    gets its own mixing buffer, seeded `its seed + rank` as a run of its own."""

    def __init__(self, lm, token_ids: np.ndarray, specs: list[SAESpec], ignore_token_ids, sink_positions: int = 0):
        first = specs[0].tc
        super().__init__(lm, token_ids, specs[0].hook, first.batch_size_tokens, first.n_batches_in_buffer,
                         first.store_batch_size_prompts, ignore_token_ids, first.seed, sink_positions=sink_positions)
        self.specs = specs

    def setup(self, stage: str | None = None) -> None:
        if self.buffer is not None:
            return
        rank, world = self._rank_world()
        if self.trainer and self.trainer.strategy.root_device != self.lm.device:
            self.lm.model.to(self.trainer.strategy.root_device)
        start, end = shard_bounds(len(self.token_ids), world)[rank]
        hooks = list(dict.fromkeys(s.hook for s in self.specs))
        reader = SharedLMReader(self.lm, self.token_ids[start:end], hooks, self.ignore_token_ids,
                                self.store_batch_sequences, self.sink_positions)
        self.buffer = BufferGroup([
            MixingBuffer(MemberSource(reader, s.hook), rank_batch_size(s.tc.batch_size_tokens, world),
                         s.tc.n_batches_in_buffer, s.tc.seed + rank) for s in self.specs])
        if self._pending_state is not None:
            self.buffer.load_state_dict(self._pending_state, self.lm.device)
            self._pending_state = None

    def mean_norms(self) -> list[float]:
        """Each SAE's mean input norm over its buffer's first fill (as BufferDataModule.mean_norm)."""
        norms = []
        for b in self.buffer.buffers:
            if b.ready is None:
                b._refill()
            norms.append(torch.cat([b.ready, b.kept]).float().norm(dim=-1).mean().item())
        return norms


class MultiBufferLink(BufferLink):
    """BufferLink for a MultiSAEModule: each SAE's input scale from its own buffer."""

    def on_fit_start(self, trainer: L.Trainer, module: "MultiSAEModule") -> None:
        if not any(m.needs_input_scale for m in module.members):
            return
        norms = torch.tensor(trainer.datamodule.mean_norms(), device=module.device)
        norms = trainer.strategy.reduce(norms, reduce_op="mean")
        for member, norm in zip(module.members, norms.tolist(), strict=True):
            if member.needs_input_scale:
                member.set_input_scale(norm)


# --- the module --------------------------------------------------------------------------------------------------


class _Group:
    """What a member's `optimizers()` returns: the shared optimizer seen through the member's parameter group."""

    def __init__(self, group: dict):
        self.param_groups = [group]


class MemberModule(SAEModule):
    """An SAEModule stepped by a MultiSAEModule: its step count, logging and optimizer are the host's."""

    def __init__(self, sae, cfg: TrainConfig, prefix: str, index: int):
        super().__init__(sae, cfg)
        self.prefix, self.index = prefix, index
        self._host: list = []  # a list, so that the host is no submodule of its member

    @property
    def host(self) -> "MultiSAEModule":
        return self._host[0]

    @property
    def global_step(self) -> int:
        return self.host.global_step

    def log_dict(self, dictionary, *args, **kwargs) -> None:
        self.host.log_dict({f"{self.prefix}{k}": v for k, v in dictionary.items()}, *args, **kwargs)

    def optimizers(self, use_pl_optimizer: bool = True):
        return _Group(self.host.optimizers().param_groups[self.index])

    def training_step(self, batch_BD: torch.Tensor, batch_idx: int) -> torch.Tensor:
        try:
            return super().training_step(batch_BD, batch_idx)
        except NonFiniteTraining as err:
            if not self.prefix:  # the run's own SAE: as a single run says it
                raise
            raise NonFiniteTraining(f"train.saes entry {self.prefix[:-1]}: {err}", err.step) from None


class MultiSAEModule(L.LightningModule):
    """Trains `members` (SAEModules, the first the run's main SAE) on a tuple of batches, one per SAE."""

    def __init__(self, saes: list, cfgs: list[TrainConfig], prefixes: list[str]):
        super().__init__()
        self.members = torch.nn.ModuleList(MemberModule(s, c, p, i)
                                           for i, (s, c, p) in enumerate(zip(saes, cfgs, prefixes, strict=True)))
        for m in self.members:
            m._host.append(self)

    def configure_optimizers(self):
        groups, lambdas = [], []
        for m in self.members:
            c, total = m.cfg, m.cfg.total_steps
            groups.append({"params": list(m.sae.parameters()), "lr": c.lr, "betas": (c.adam_beta1, c.adam_beta2)})
            warm, decay = int(c.lr_warm_up_fraction * total), int(c.lr_decay_fraction * total)
            lambdas.append(lambda step, t=total, w=warm, d=decay: lr_factor(step, t, w, d))
        optimizer = torch.optim.Adam(groups, fused=True)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        for m in self.members:  # per SAE, each by its own sae.grad_clip (the trainer's clipping is off)
            if m.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(list(m.sae.parameters()), m.cfg.grad_clip)

    def on_fit_start(self) -> None:
        for m in self.members:
            m.on_fit_start()

    def training_step(self, batches, batch_idx: int) -> torch.Tensor:
        # The members' parameters are disjoint: the summed loss gives each SAE the gradient of its own loss.
        return sum(m.training_step(b, batch_idx) for m, b in zip(self.members, batches, strict=True))


def split_log(merged, outs: dict) -> None:
    """Each SAE's columns of a multi-SAE run's training log (`outs`: metric prefix -> file; prefix "" is the main
    SAE's, whose metrics carry none), each row with its step and epoch, under the names a single run logs. A run that
    logged no CSV (e.g. logger=wandb) has no log to split."""
    from pathlib import Path

    import pandas as pd

    if not Path(merged).is_file():
        return
    log = pd.read_csv(merged)
    prefixes = [p for p in outs if p]
    for prefix, path in outs.items():
        if prefix:
            columns = {c: c[len(prefix):] for c in log.columns if c.startswith(prefix)}
        else:
            columns = {c: c for c in log.columns if not any(c.startswith(p) for p in prefixes)}
        keys = [c for c in ("epoch", "step") if c in log.columns]
        part = log[[*dict.fromkeys([*keys, *columns])]].rename(columns=columns)
        part = part.dropna(how="all", subset=[c for c in part.columns if c not in keys])
        part.to_csv(path, index=False)
