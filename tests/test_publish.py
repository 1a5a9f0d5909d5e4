"""Publishing survives kills at every step and concurrent runs: a reader always finds one complete artifact."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from reasoning_sae import artifacts, publish

# A child process builds `final` (one file, `version`, holding its argument) through run_stage; KILL_AT names the
# step of the publish at which it dies as SIGKILL would (os._exit: no cleanup, no finally).
CHILD = textwrap.dedent("""
    import os, shutil, sys, time
    from pathlib import Path
    from omegaconf import OmegaConf
    from reasoning_sae import artifacts, publish

    root, version, kill_at, exchange, sleep = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
    if exchange == "no":
        publish._exchange = lambda a, b: False
    renames = [0]
    real_rename, real_rmtree = Path.rename, shutil.rmtree
    def rename(self, target):
        result = real_rename(self, target)
        renames[0] += 1
        if kill_at == f"rename{renames[0]}":
            os._exit(9)
        return result
    def rmtree(path, *args, **kwargs):
        if kill_at == "rmtree":
            os._exit(9)
        return real_rmtree(path, *args, **kwargs)
    Path.rename, shutil.rmtree = rename, rmtree
    publish.shutil.rmtree = rmtree

    def build(tmp):
        time.sleep(sleep)
        if kill_at == "build":
            os._exit(9)
        (tmp / "version").write_text(version)
        with open(os.path.join(root, "builds.log"), "a") as log:
            log.write(version + "\\n")

    cfg = OmegaConf.create({"paths": {"artifacts": root}, "experiment_name": "exp", "force": False, "v": version})
    artifacts.run_stage(cfg, "stage", ["v"], {}, build)
""")


def run_child(root: Path, version: str, kill_at: str = "none", exchange: str = "yes", sleep: float = 0.0):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(root), version, kill_at, exchange, str(sleep)])


def artifact(root: Path) -> Path:
    return root / "exp" / "stage"


def only_the_artifact_is_left(root: Path) -> None:
    assert sorted(p.name for p in (root / "exp").iterdir()) == ["stage"]


@pytest.mark.parametrize("exchange,kill_at", [
    ("yes", "build"), ("yes", "rmtree"),             # renameat2: the swap itself is one system call
    ("no", "build"), ("no", "rename1"), ("no", "rename2"), ("no", "rmtree"),   # two renames where it is missing
])
def test_a_kill_at_any_step_of_a_publish_leaves_one_complete_artifact(tmp_path, exchange, kill_at):
    assert run_child(tmp_path, "v1").wait() == 0
    assert run_child(tmp_path, "v2", kill_at, exchange).wait() == 9
    cfg = OmegaConf.create({"paths": {"artifacts": str(tmp_path)}, "experiment_name": "exp"})
    found = artifacts.upstream(cfg, "stage", "version")  # what a later stage reads: the old one or the new one, whole
    assert found.read_text() in ("v1", "v2") and (artifact(tmp_path) / "meta.json").is_file()
    assert run_child(tmp_path, "v3").wait() == 0  # the next run cleans up after the dead one and publishes
    assert (artifact(tmp_path) / "version").read_text() == "v3"
    only_the_artifact_is_left(tmp_path)


def test_a_stranded_old_artifact_is_put_back_before_anything_reads_past_it(tmp_path):
    assert run_child(tmp_path, "v1").wait() == 0
    assert run_child(tmp_path, "v2", "rename1", "no").wait() == 9  # killed between the two renames
    assert not artifact(tmp_path).exists()
    publish.clean_stale(artifact(tmp_path))
    assert (artifact(tmp_path) / "version").read_text() == "v1"


def test_concurrent_runs_of_a_stage_build_once_and_both_succeed(tmp_path):
    runs = [run_child(tmp_path, "same", sleep=1.5) for _ in range(3)]
    assert [r.wait() for r in runs] == [0, 0, 0]
    assert (tmp_path / "builds.log").read_text() == "same\n"  # the others waited, then found it up to date
    assert (artifact(tmp_path) / "version").read_text() == "same"
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["stage"]  # lock file removed


def test_temporaries_of_live_processes_are_left_alone(tmp_path):
    final = tmp_path / "a"
    live = tmp_path / f".a.tmp-{os.getppid()}"
    dead = tmp_path / ".a.tmp-999999999"
    live.mkdir(), dead.mkdir()
    publish.clean_stale(final)
    assert live.is_dir() and not dead.exists()


def test_the_lock_is_exclusive_and_released(tmp_path):
    final = tmp_path / "a"
    with publish.stage_lock(final):
        probe = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os
            fd = os.open({str(tmp_path / '.a.lock')!r}, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SystemExit(3)
        """)])
        assert probe.returncode == 3
    assert not (tmp_path / ".a.lock").exists()
