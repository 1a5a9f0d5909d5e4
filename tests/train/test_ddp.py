"""A real 2-process DDP run (Lightning, gloo on the CPU) started from the CLI as a user would."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import DDP, REPO, tiny

# Enough steps for the SAE to learn (explained variance ~0.74 here), so the two runs are comparable.
LEARNS = ("sae.training_tokens=25600", "sae.l1_coefficient=1", "sae.lr=3e-3", "sae.checkpoint_every=100")


def _cli(args, artifacts: Path, new_session: bool = False):
    env = {"REASONING_SAE_ARTIFACTS": str(artifacts), "PATH": "/usr/bin:/bin", "HOME": str(artifacts.parent),
           "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "reasoning_sae", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, start_new_session=new_session, timeout=600)


def _artifact(root: Path) -> tuple[dict, dict]:
    metrics = json.loads((root / "demo/train/metrics.json").read_text())
    return metrics, json.loads((root / "demo/train/sae/cfg.json").read_text())["metadata"]


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory, tiny_llama_dir):
    root = tmp_path_factory.mktemp("ddp")
    assert _cli(["corpus", *tiny(tiny_llama_dir)], root).returncode == 0
    return root


def _copy_corpus(corpus_root: Path, root: Path) -> Path:
    subprocess.run(["cp", "-r", str(corpus_root), str(root)], check=True)
    return root


def test_ddp_trains_the_global_batch_on_disjoint_shards_like_one_process(corpus_root, tmp_path, tiny_llama_dir):
    one, two = _copy_corpus(corpus_root, tmp_path / "one"), _copy_corpus(corpus_root, tmp_path / "two")
    assert _cli(["train", *tiny(tiny_llama_dir), *LEARNS], one).returncode == 0
    run = _cli(["train", *tiny(tiny_llama_dir), *LEARNS, *DDP], two)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Starting with 2 processes" in run.stdout + run.stderr
    (m1, meta1), (m2, meta2) = _artifact(one), _artifact(two)
    assert m2["details/n_training_tokens"] == meta2["tokens_seen"] == 25600  # both ranks counted, once
    assert (meta2["world_size"], meta2["batch_size_tokens"], meta2["batch_size_tokens_per_rank"]) == (2, 64, 32)
    (a0, a1), (b0, b1) = meta2["rank_shards"]
    assert a0 == 0 and a1 == b0 and b1 > b0 and meta1["rank_shards"] == [[0, b1]]  # disjoint, covering
    # rank 0 alone wrote: one artifact, no leftover temporary directory of another rank
    names = sorted(p.name.split("-")[0] for p in (two / "demo").iterdir())
    assert names == sorted(p.name.split("-")[0] for p in (one / "demo").iterdir()) == [".train", "corpus", "logs",
                                                                                       "train"]
    # Same config, same tokens, different shuffling and shards: tolerance 10% on L0, 0.03 on explained variance.
    assert abs(m2["metrics/l0"] - m1["metrics/l0"]) <= 0.1 * m1["metrics/l0"]
    assert abs(m2["metrics/explained_variance"] - m1["metrics/explained_variance"]) <= 0.03
    assert m1["metrics/explained_variance"] > 0.5


def test_ddp_resumes_after_sigkill_of_every_rank(corpus_root, tmp_path, tiny_llama_dir):
    straight, killed = _copy_corpus(corpus_root, tmp_path / "straight"), _copy_corpus(corpus_root, tmp_path / "killed")
    args = (*tiny(tiny_llama_dir), *DDP)
    assert _cli(["train", *args], straight).returncode == 0
    crash = _cli(["train", *args, "callbacks=[{_target_:tests.helpers.KillAtStep,step:12,group:true}]"], killed,
                 new_session=True)
    assert crash.returncode == -9
    assert list(killed.glob("demo/.train-work-*/checkpoints/last.ckpt"))
    assert not (killed / "demo/train").exists()
    resumed = _cli(["train", *args, "resume=true"], killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    a = load_file(straight / "demo/train/sae/sae_weights.safetensors")
    b = load_file(killed / "demo/train/sae/sae_weights.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)
    assert _artifact(killed)[0]["details/n_training_tokens"] == 1280


def test_more_ranks_than_training_sequences_fails_before_the_model_loads(corpus_root, tmp_path, tiny_llama_dir):
    root = _copy_corpus(corpus_root, tmp_path / "r")
    run = _cli(["train", *tiny(tiny_llama_dir), "trainer.devices=1000", "trainer.strategy=ddp"], root)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("error: 1000 DDP ranks but only")
    assert not (root / "demo/train").exists() and not list((root / "demo").glob(".train*"))


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(corpus_root, tmp_path, tiny_llama_dir):
    root = _copy_corpus(corpus_root, tmp_path / "r")
    run = _cli(["train", *tiny(tiny_llama_dir), *DDP, "sae.batch_size_tokens=63", "sae.training_tokens=630"], root)
    assert run.returncode == 2 and "make it a multiple of 2" in run.stderr


def test_a_multirun_of_ddp_jobs_starts_each_jobs_ranks_afresh(corpus_root, tmp_path, tiny_llama_dir):
    root = _copy_corpus(corpus_root, tmp_path / "r")
    sweep = _cli(["train", "-m", *tiny(tiny_llama_dir), *DDP, "sae.l1_coefficient=1,5"], root)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    jobs = sorted(root.glob("demo/multirun/train/*/[0-9]"))
    assert [j.name for j in jobs] == ["0", "1"]
    for job, l1 in zip(jobs, (1, 5)):
        meta = json.loads((job / "train/sae/cfg.json").read_text())["metadata"]
        assert meta["world_size"] == 2 and meta["tokens_seen"] == 1280
        assert f"l1_coefficient: {l1}" in (job / "train/config.yaml").read_text()
