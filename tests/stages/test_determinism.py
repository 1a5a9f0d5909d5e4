"""The same machine gives the same artifacts: two runs of corpus, train, vocab, score and interpret on the tiny Llama,
one on 1 thread and one on 2, write byte-identical files except where provenance is recorded (times, paths, commit).
At these sizes MKL and ATen run every product and sum on one thread whatever the setting; at the demo's sizes they
split them by thread count, and 1- and 2-thread runs differ in their last bits (README, "Reproducing")."""

import json
import subprocess
import sys
from pathlib import Path

from reasoning_sae.manifest import read_manifest
from tests.helpers import REPO, tiny

STAGES = ("corpus", "train", "vocab", "score", "interpret")
# files that record when, where and by which commit a stage ran, not what it computed
PROVENANCE = {"meta.json", "config.yaml", "README.md", "cfg.json", "sae.json",
              "top_features.json"}  # the last two: F_R with the SAE's path and fingerprint (compared without them)


def run(root: Path, threads: int, args: tuple[str, ...]) -> None:
    env = {"REASONING_SAE_ARTIFACTS": str(root), "PATH": "/usr/bin:/bin", "HOME": str(root.parent),
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    for stage in STAGES:
        done = subprocess.run([sys.executable, "-m", "reasoning_sae", stage, *args], capture_output=True, text=True,
                              env=env, cwd=REPO)
        assert done.returncode == 0, done.stderr[-2000:]


def computed(root: Path) -> dict[str, str]:
    """{stage/file: sha256} of every file a stage computed, from its manifest."""
    return {f"{stage}/{name}": digest for stage in STAGES
            for name, digest in read_manifest(root / "demo" / stage).items() if Path(name).name not in PROVENANCE}


def test_two_runs_on_one_and_two_threads_are_byte_identical(tmp_path, tiny_llama_dir):
    args = (*tiny(tiny_llama_dir), "logger=none", "interpret.sequences=8")
    run(tmp_path / "one", 1, args)
    run(tmp_path / "two", 2, args)
    one, two = computed(tmp_path / "one"), computed(tmp_path / "two")
    assert {"train/sae/sae_weights.safetensors", "score/scores.parquet", "interpret/features.json"} <= one.keys()
    assert one == two, sorted(k for k in one.keys() | two.keys() if one.get(k) != two.get(k))
    assert len(one) > 10
    tops = [json.loads((root / "demo" / "score" / "top_features.json").read_text()) for root in (tmp_path / "one",
                                                                                               tmp_path / "two")]
    assert [{k: v for k, v in top.items() if k != "sae"} for top in tops] == [
        {k: v for k, v in tops[0].items() if k != "sae"}] * 2
