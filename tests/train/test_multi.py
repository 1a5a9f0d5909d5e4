import json

import numpy as np
import pytest
import torch

from reasoning_sae import SparseAutoencoder, UserError
from reasoning_sae.stages import corpus, train
from reasoning_sae.train.config import TrainConfig
from reasoning_sae.train.store import LMSource
from reasoning_sae.train.multi import MemberSource, MultiSAEModule, SharedLMReader, parse_saes
from reasoning_sae.sae import SAEConfig, SparseAutoencoder as SAE, initialize
from tests.helpers import tiny

TWO = "train.saes=[{name: L1, layer: 1},{name: l1x2, l1_coefficient: 10.0, seed: 7}]"


def test_one_pass_trains_every_sae_as_it_would_train_alone(compose, tiny_llama_dir, tmp_path, monkeypatch):
    from reasoning_sae.models.lm import LanguageModel

    forwards = []
    real = LanguageModel.activations

    def counted(self, token_ids, hook="blocks.0.hook_resid_post", attention_mask=None):
        forwards.append(hook)
        return real(self, token_ids, hook, attention_mask)

    monkeypatch.setattr(LanguageModel, "activations", counted)
    reads = []
    real_read = LMSource.read
    monkeypatch.setattr(LMSource, "read", lambda self: reads.append(1) or real_read(self))
    cfg = compose("train", (*tiny(tiny_llama_dir), TWO))
    corpus.run(cfg)
    out = train.run(cfg)
    train_reads = [h for h in forwards if not isinstance(h, str)]  # the buffers' reads (the evaluation reads one hook)
    assert train_reads and all(sorted(h) == ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
                               for h in train_reads)
    n_multi = len(train_reads)
    for name, hook in (("L1", "blocks.1.hook_resid_post"), ("l1x2", "blocks.2.hook_resid_post")):
        sub = out / "saes" / name
        sae = SparseAutoencoder.load(sub / "sae")
        assert sae.cfg.metadata["hook_name"] == hook and sae.cfg.metadata["tokens_seen"] == 1280
        assert "metrics/explained_variance" in json.loads((sub / "metrics.json").read_text())
        assert (sub / "sae" / "README.md").read_text().startswith("---\n") and (sub / "density.png").is_file()
        log = (sub / "train_log.csv").read_text().splitlines()
        assert log[0].split(",")[:2] == ["epoch", "step"] and "losses/mse_loss" in log[0] and len(log) > 3
        assert "/losses" not in log[0]
    assert "L1/" not in (out / "train_log.csv").read_text().splitlines()[0]

    # Each SAE alone: the same weights (its own buffer, seed, optimizer and clipping in the group).
    alone = {"": (), "L1": ("model.layer=1",), "l1x2": ("sae.l1_coefficient=10.0", "sae.seed=7")}
    for name, overrides in alone.items():
        reads.clear()
        single = compose("train", (*tiny(tiny_llama_dir), *overrides, f"job_dir={tmp_path / 'alone' / name}"))
        ref = SparseAutoencoder.load(train.run(single) / "sae")
        got = SparseAutoencoder.load(out / ("saes/" + name if name else "") / "sae")
        for p in ("W_enc", "b_enc", "W_dec", "b_dec"):
            torch.testing.assert_close(getattr(got, p), getattr(ref, p), atol=1e-6, rtol=1e-5)
        # one LM forward per batch of sequences, whichever number of SAEs it feeds: as many as one SAE alone reads
        assert len(reads) == n_multi


def test_bad_entries_are_one_line_before_any_model_loads(compose, tiny_llama_dir, monkeypatch):
    import reasoning_sae.stages.train as stage

    monkeypatch.setattr(stage, "load_lm", lambda *_: pytest.fail("the model loaded"))
    for entries, message in (
        ("[{name: a},{name: a}]", "train.saes names 'a' twice"),
        ("[{name: a, colour: red}]", r"train.saes entry a: unknown sae setting\(s\) \['colour'\]"),
        ("[{name: a, layer: 4}]", "train.saes entry a: layer=4 is out of range: give 0-3"),
        ("[{name: a, batch_size_tokens: 32}]", "sets batch_size_tokens, which every SAE of one pass shares"),
        ("[{layer: 1}]", "give a mapping with a name"),
    ):
        cfg = compose("train", (*tiny(tiny_llama_dir), f"train.saes={entries}"))
        with pytest.raises(UserError, match=message):
            train.validate(cfg)


def test_parse_keeps_the_main_settings_an_entry_leaves_alone():
    main = TrainConfig(l1_coefficient=3.0, training_tokens=4096)
    (spec,) = parse_saes([{"name": "k8", "layer": 5, "architecture": "topk", "k": 8}],
                         {"l1_coefficient": 3.0, "training_tokens": 4096}, main, 2, 8)
    assert (spec.hook, spec.tc.k, spec.tc.l1_coefficient, spec.tc.training_tokens) == (
        "blocks.5.hook_resid_post", 8, 3.0, 4096)


class _FakeLM:
    def __init__(self):
        self.calls = 0

    def iter_activations(self, rows, hooks, batch_sequences, ignore, sink):
        from reasoning_sae.models import ActivationBatch

        self.calls += 1
        ids = torch.as_tensor(np.asarray(rows))
        acts = {h: ids[..., None].float() + 100 * i for i, h in enumerate(hooks)}
        yield ActivationBatch(0, ids, torch.ones_like(ids, dtype=torch.bool), acts)


def test_shared_reader_runs_the_lm_once_per_chunk_however_far_apart_its_readers_are():
    lm = _FakeLM()
    reader = SharedLMReader(lm, np.arange(10).reshape(5, 2), ["a", "b"], (), 2)
    fast, slow = MemberSource(reader, "a"), MemberSource(reader, "b")
    fast_reads = [fast.read() for _ in range(4)]  # runs ahead: chunks 0-2, then the corpus again
    slow_reads = [slow.read() for _ in range(4)]
    assert lm.calls == 4 and len(reader.chunks) <= 1
    assert [r.flatten().tolist() for r in fast_reads] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2, 3]]
    assert all(torch.equal(s, f + 100) for s, f in zip(slow_reads, fast_reads))


def test_gradient_clipping_is_per_sae():
    saes = [initialize(SAE(SAEConfig(d_in=4, d_sae=8)), "fixed", generator=torch.Generator().manual_seed(i))
            for i in range(2)]
    cfgs = [TrainConfig(grad_clip=1.0, training_tokens=64, batch_size_tokens=8),
            TrainConfig(grad_clip=0.0, training_tokens=64, batch_size_tokens=8)]
    host = MultiSAEModule(saes, cfgs, ["", "b/"])
    for i, sae in enumerate(saes):
        for p in sae.parameters():
            p.grad = torch.full_like(p, 10.0 * (i + 1))
    before = [p.grad.clone() for p in saes[1].parameters()]
    host.configure_gradient_clipping(None)
    clipped = torch.cat([p.grad.flatten() for p in saes[0].parameters()]).norm()
    assert clipped == pytest.approx(1.0, rel=1e-4)  # the first SAE to its own norm, not the norm over both
    assert all(torch.equal(p.grad, b) for p, b in zip(saes[1].parameters(), before))  # grad_clip=0: untouched


@pytest.mark.slow
def test_ddp_trains_each_sae_of_the_pass_as_a_ddp_run_of_its_own(tmp_path, tiny_llama_dir):
    """Two gloo processes: every rank feeds its shard to both SAEs; the layer-1 SAE ends as a DDP run of it alone."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from tests.helpers import DDP, REPO

    def cli(args, root):
        env = {"REASONING_SAE_ARTIFACTS": str(root), "PATH": "/usr/bin:/bin", "HOME": str(root.parent),
               "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
        run = subprocess.run([sys.executable, "-m", "reasoning_sae", *args], capture_output=True, text=True, env=env,
                             cwd=REPO, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        return run

    root = tmp_path / "a"
    cli(["corpus", *tiny(tiny_llama_dir)], root)
    run = cli(["train", *tiny(tiny_llama_dir), *DDP, "train.saes=[{name:L1,layer:1}]"], root)
    assert "Starting with 2 processes" in run.stdout + run.stderr
    cli(["train", *tiny(tiny_llama_dir), *DDP, "model.layer=1", f"job_dir={tmp_path / 'alone'}"], root)
    meta = json.loads((root / "demo/train/saes/L1/sae/cfg.json").read_text())["metadata"]
    assert (meta["world_size"], meta["batch_size_tokens_per_rank"], meta["tokens_seen"]) == (2, 32, 1280)
    a = load_file(root / "demo/train/saes/L1/sae/sae_weights.safetensors")
    b = load_file(tmp_path / "alone/train/sae/sae_weights.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)


def test_the_fingerprint_covers_train_saes_only_when_it_lists_some(compose, tiny_llama_dir):
    from reasoning_sae.artifacts import fingerprint

    alone, one, other = (compose("train", (*tiny(tiny_llama_dir), *extra)) for extra in (
        (), ("train.saes=[{name:a,layer:1}]",), ("train.saes=[{name:a,layer:0}]",)))
    assert train.config_keys(alone) == train.CONFIG_KEYS  # a single-SAE run keeps the fingerprint it had
    prints = {fingerprint(c, train.config_keys(c), {}) for c in (alone, one, other)}
    assert len(prints) == 3


def test_a_run_that_logs_no_csv_writes_every_sae_without_a_log(compose, tiny_llama_dir):
    cfg = compose("train", (*tiny(tiny_llama_dir), TWO, "logger=none"))
    corpus.run(cfg)
    out = train.run(cfg)
    for sub in (out, out / "saes" / "L1", out / "saes" / "l1x2"):
        assert (sub / "sae" / "cfg.json").is_file() and (sub / "metrics.json").is_file()
        assert not (sub / "train_log.csv").exists()
