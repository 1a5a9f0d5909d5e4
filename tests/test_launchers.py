"""Hydra multiruns through submitit: local processes, and a real one-node SLURM cluster (Debian's slurm-wlm and
munge, started here as root by docker/slurm/one_node_cluster.sh; skipped with the reason where it cannot be)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, tiny

CLUSTER = REPO / "docker" / "slurm" / "one_node_cluster.sh"


def _cli(args, artifacts: Path, path: str | None = None):
    env = {**os.environ, "REASONING_SAE_ARTIFACTS": str(artifacts), "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "reasoning_sae", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=900)


def _sweep_outputs(root: Path) -> list[float]:
    jobs = sorted(root.glob("demo/multirun/train/*/[0-9]"))
    assert [j.name for j in jobs] == ["0", "1"]
    l1 = []
    for job in jobs:
        assert (job / "train" / "sae" / "sae_weights.safetensors").is_file()
        assert json.loads((job / "train" / "metrics.json").read_text())["details/n_training_tokens"] == 1280
        l1.append(float((job / "train" / "config.yaml").read_text().split("l1_coefficient: ")[1].split("\n")[0]))
    return l1


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory, tiny_llama_dir):
    root = tmp_path_factory.mktemp("launch")
    assert _cli(["corpus", *tiny(tiny_llama_dir)], root).returncode == 0
    return root


def test_submitit_local_runs_each_job_of_a_train_sweep_in_its_own_process(corpus_root, tiny_llama_dir):
    sweep = _cli(["train", "-m", *tiny(tiny_llama_dir), "hydra/launcher=submitit_local", "sae.l1_coefficient=1,5"],
                 corpus_root)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert _sweep_outputs(corpus_root) == [1.0, 5.0]
    logs = list(corpus_root.glob("demo/multirun/train/*/.submitit/*/*_log.out"))
    assert len(logs) == 2 and len({p.parent.name for p in logs}) == 2  # two processes, two submitit job ids


def test_slurm_unreachable_is_one_line_before_anything_runs(tmp_path):
    run = _cli(["train", "-m", "hydra/launcher=slurm", "sae.l1_coefficient=1,5"], tmp_path, path="/nonexistent")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "error: hydra/launcher=slurm needs SLURM's sbatch and sinfo, which are not installed here: start SLURM (or "
        "run on a login node), or use hydra/launcher=submitit_local"]
    assert not (tmp_path / "demo").exists()


@pytest.fixture(scope="module")
def slurm_cluster():
    """A one-node SLURM cluster on this machine (idempotent; installs slurm-wlm and munge with apt as root)."""
    up = subprocess.run(["bash", str(CLUSTER), "up"], capture_output=True, text=True, timeout=600)
    if up.returncode == 3:
        pytest.skip(f"no SLURM cluster here: {up.stderr.strip()}")
    assert up.returncode == 0, up.stdout + up.stderr
    return up.stdout.strip()


def test_a_slurm_sweep_runs_each_job_through_sbatch(slurm_cluster, corpus_root, tiny_llama_dir):
    cpu_jobs = ("hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=null",
                "hydra.launcher.timeout_min=20")
    root = corpus_root.parent / "slurm"
    subprocess.run(["cp", "-r", str(corpus_root), str(root)], check=True)
    shutil.rmtree(root / "demo" / "multirun", ignore_errors=True)  # the corpus only, not another test's sweep
    sweep = _cli(["train", "-m", *tiny(tiny_llama_dir), "hydra/launcher=slurm", *cpu_jobs, "sae.l1_coefficient=1,5"],
                 root)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert _sweep_outputs(root) == [1.0, 5.0]
    (submission,) = root.glob("demo/multirun/train/*/.submitit/*/*_submission.sh")  # one sbatch: a 2-task array
    assert "#SBATCH --array=0-1" in submission.read_text()
    for _ in range(60):  # submitit returns on the job's result file; slurmctld marks the tasks done a moment later
        tasks = subprocess.run(["scontrol", "show", "job", submission.parent.name], capture_output=True, text=True)
        if "JobState=RUNNING" not in tasks.stdout and "JobState=COMPLETING" not in tasks.stdout:
            break
        time.sleep(1)
    assert tasks.stdout.count("JobState=COMPLETED") == 2, tasks.stdout
