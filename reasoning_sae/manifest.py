"""sha256 manifests of written outputs: one `<sha256>  <relative path>` line per file, sorted, in sha256sum's format
(so `cd <dir> && sha256sum -c MANIFEST.sha256` checks one as well). Every stage writes one into its artifact, the
figures stage one into paper/; `make verify` recomputes them."""

import hashlib
from collections.abc import Iterable
from pathlib import Path

MANIFEST = "MANIFEST.sha256"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def listed_files(root: Path, parts: Iterable[str] | None = None) -> list[Path]:
    """Files under `root` (only under its top-level entries `parts`, when given), the manifest itself left out."""
    tops = [root / p for p in parts] if parts is not None else [root]
    files = [p for top in tops for p in ([top] if top.is_file() else top.rglob("*")) if p.is_file()]
    return sorted(p for p in files if p.name != MANIFEST)


def write_manifest(root: Path, parts: Iterable[str] | None = None) -> Path:
    lines = [f"{file_sha256(p)}  {p.relative_to(root).as_posix()}\n" for p in listed_files(root, parts)]
    path = root / MANIFEST
    path.write_text("".join(lines))
    return path


def read_manifest(root: Path) -> dict[str, str]:
    """{relative path: sha256} of root's manifest."""
    entries = {}
    for line in (root / MANIFEST).read_text().splitlines():
        digest, _, name = line.partition("  ")
        entries[name] = digest
    return entries


def check_manifest(root: Path, parts: Iterable[str] | None = None) -> list[str]:
    """One line per difference between `root`'s files and its manifest (missing, changed, not listed)."""
    if not (root / MANIFEST).is_file():
        return [f"{root / MANIFEST}: missing: rerun the stage that writes {root}"]
    listed = read_manifest(root)
    present = {p.relative_to(root).as_posix(): p for p in listed_files(root, parts)}
    problems = [f"{root / name}: listed in {MANIFEST} but missing" for name in sorted(listed.keys() - present.keys())]
    problems += [f"{root / name}: not in {MANIFEST} (added after the stage wrote it)"
                 for name in sorted(present.keys() - listed.keys())]
    problems += [f"{root / name}: sha256 differs from {MANIFEST} (changed after it was written)"
                 for name in sorted(listed.keys() & present.keys()) if file_sha256(present[name]) != listed[name]]
    return problems
