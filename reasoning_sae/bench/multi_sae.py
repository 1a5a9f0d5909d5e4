"""N SAEs trained from one LM pass (train.saes: the shared reader, a mixing buffer and an optimizer step per SAE)
against its floor, one early-stopped LM forward to the deepest layer plus N bare SAE steps on ready batches, and
against N runs of one SAE each (each its own forward to its own layer, buffer and step), as the paper's cross-layer
SAEs were trained. Every variant trains the same N SAE shapes on the same token chunks, one step per chunk."""

import statistics

import numpy as np
import torch

from reasoning_sae.bench.timing import round_seconds
from reasoning_sae.models import resid_post
from reasoning_sae.sae import SAEConfig, SparseAutoencoder, initialize
from reasoning_sae.train.multi import MemberSource, SharedLMReader
from reasoning_sae.train.store import LMSource, MixingBuffer

FLOOR_TARGET = 1.10  # one pass for N SAEs <= 1.10 x (one forward + N SAE steps)


def _sae_step(d_in: int, d_sae: int, seed: int):
    sae = initialize(SparseAutoencoder(SAEConfig(d_in, d_sae)), "fixed", generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(sae.parameters(), lr=5e-5, fused=True)

    def step(x_BD: torch.Tensor) -> None:
        optimizer.zero_grad()
        sae.training_loss(x_BD.float(), l1_coefficient=5.0).loss.backward()
        optimizer.step()
    return step


def run(lm, layers: tuple[int, ...] = (6, 12, 18), expansion: int = 4, sequences: int = 2, seq_len: int = 32,
        repeats: int = 7, seed: int = 0) -> dict:
    """Median time (ms) of one training step of every SAE, per variant, over `repeats` interleaved rounds."""
    rng = np.random.default_rng(seed)
    n_chunks = repeats + 3
    ids_NS = rng.integers(10, lm.model.config.vocab_size, size=(n_chunks * sequences, seq_len))
    batch = sequences * seq_len  # one chunk of vectors per step: the buffer reads one LM pass per step
    hooks = [resid_post(layer) for layer in layers]
    d_sae = expansion * lm.d_model

    def buffer(source, i):
        return MixingBuffer(source, batch, 2, seed + i)

    # one pass: the train stage's multi-SAE path
    reader = SharedLMReader(lm, ids_NS, hooks, (), sequences)
    multi = [(buffer(MemberSource(reader, h), i), _sae_step(lm.d_model, d_sae, i)) for i, h in enumerate(hooks)]
    # N runs of one SAE: each its own forward to its own layer
    single = [(buffer(LMSource(lm, ids_NS, h, (), sequences), i), _sae_step(lm.d_model, d_sae, i))
              for i, h in enumerate(hooks)]
    # the floor: a bare forward to the deepest layer and N steps on batches already there
    floor_steps = [_sae_step(lm.d_model, d_sae, i) for i in range(len(hooks))]
    floor_ids = torch.as_tensor(ids_NS[:sequences])
    acts = lm.activations(floor_ids, hook=hooks)  # the batches of real activations, read beforehand
    floor_x = [acts[h].reshape(-1, lm.d_model) for h in hooks]

    def one_pass():
        for buf, step in multi:
            step(buf.next_batch())

    def separate():
        for buf, step in single:
            step(buf.next_batch())

    def floor():
        with torch.no_grad():
            lm.activations(floor_ids, hook=hooks[-1])
        for step, x in zip(floor_steps, floor_x):
            step(x)

    rounds = round_seconds({"floor": floor, "multi": one_pass, "separate": separate}, repeats)
    ms = {name: 1e3 * statistics.median(t) for name, t in rounds.items()}
    # ratios within each round (the variants ran back to back), then their median: steadier under a drifting load
    over_floor = [m / f for m, f in zip(rounds["multi"], rounds["floor"])]
    speedup = [s / m for s, m in zip(rounds["separate"], rounds["multi"])]
    return {"n_saes": len(layers), "layers": list(layers), "d_model": lm.d_model, "d_sae": d_sae, "batch": batch,
            "repeats": repeats, "threads": torch.get_num_threads(), "floor_ms": ms["floor"], "multi_ms": ms["multi"],
            "separate_ms": ms["separate"], "multi_over_floor": statistics.median(over_floor),
            "speedup_vs_separate": statistics.median(speedup), "multi_over_floor_best": min(over_floor)}


def report(r: dict) -> str:
    row = "  {:<52}{:>8.1f} ms".format
    ok = r["multi_over_floor"] <= FLOOR_TARGET
    return "\n".join([
        f"{r['n_saes']} SAEs (layers {', '.join(map(str, r['layers']))}, d_model {r['d_model']} -> d_sae "
        f"{r['d_sae']}) from one LM pass: one step of each on {r['batch']} vectors, {r['threads']} threads, median "
        f"of {r['repeats']} interleaved rounds",
        row("floor: one forward to the deepest layer + N SAE steps", r["floor_ms"]),
        row("one pass (train.saes): shared reader, N buffers, N steps", r["multi_ms"])
        + f"   {r['multi_over_floor']:5.2f} x floor    target <= {FLOOR_TARGET:.2f} x  {'PASS' if ok else 'MISS'}",
        row(f"{r['n_saes']} separate runs (a forward to each layer)", r["separate_ms"])
        + f"   one pass is {r['speedup_vs_separate']:.2f} x faster",
        f"  (ratios: medians of each round's ratio; the best round's: {r['multi_over_floor_best']:.2f} x floor)",
    ])
