"""README commands that run as written: the `sae_steered_vllm` lm-eval command on the demo model (with a random
SAE in place of the demo's trained one, which these tests do not build)."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import needs_vllm

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(marker: str) -> list[str]:
    """The shell commands (continuation lines joined) of the README's ```bash blocks that contain `marker`."""
    commands, block = [], None
    for line in README.read_text().splitlines():
        if block is None:
            block = [] if line.strip() == "```bash" else None
            continue
        if line.strip() == "```":
            joined = "\n".join(block).replace("\\\n", " ")
            commands += [c for c in joined.splitlines() if marker in c]
            block = None
            continue
        block.append(line)
    return commands


@needs_vllm
def test_the_readme_sae_steered_vllm_command_runs_on_the_demo(tmp_path):
    from tests.steering.test_hook import random_sae

    (command,) = readme_commands("--model sae_steered_vllm")
    words = shlex.split(command.split("#")[0])
    assert words[:3] == [".venv/bin/python", "-m", "reasoning_sae.lm_eval"], words
    args = words[3:]
    i = args.index("--model_args") + 1
    model_args = dict(kv.split("=", 1) for kv in args[i].split(","))
    assert model_args["pretrained"] == "smollm2-135m-instruct" and model_args["dtype"] == "float32"
    assert model_args["sae"] == "artifacts/demo/train/sae" and int(model_args["max_model_len"]) >= 1024
    random_sae().save(tmp_path / "sae")  # 32 latents on the demo model's blocks.6.hook_resid_post
    model_args.update(sae=str(tmp_path / "sae"), features="5", f_max="3")
    args[i] = ",".join(f"{k}={v}" for k, v in model_args.items())
    args[args.index("--output_path") + 1] = str(tmp_path / "out")
    assert args[args.index("--limit") + 1] == "2" and "--log_samples" in args
    run = subprocess.run([sys.executable, "-m", "reasoning_sae.lm_eval", *args, "--gen_kwargs", "max_gen_toks=8"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    (results,) = (tmp_path / "out").glob("*/results_*.json")
    assert "pass@1,none" in json.loads(results.read_text())["results"]["reasoning_demo"]
    (samples,) = (tmp_path / "out").glob("*/samples_reasoning_demo_*.jsonl")
    assert len(samples.read_text().splitlines()) == 2


def test_the_readme_ddp_command_is_the_one_tests_run():
    from tests.train.test_ddp import DDP

    (command,) = readme_commands("trainer.accelerator=cpu")
    words = shlex.split(command.split("#")[0])
    assert words[:4] == [".venv/bin/python", "-m", "reasoning_sae", "train"] and tuple(words[4:]) == DDP


def test_the_readme_submitit_local_sweep_is_the_one_tests_run():
    (command,) = readme_commands("hydra/launcher=submitit_local")
    words = shlex.split(command.split("#")[0])
    assert words == [".venv/bin/python", "-m", "reasoning_sae", "train", "-m", "hydra/launcher=submitit_local",
                     "sae.l1_coefficient=1,5"]
    source = (Path(__file__).parent / "test_launchers.py").read_text()
    assert '"hydra/launcher=submitit_local", "sae.l1_coefficient=1,5"' in source
