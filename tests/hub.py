"""A Hugging Face hub cache built by hand in the hub's own layout (models--org--name/{blobs,snapshots,refs}), so
the real huggingface_hub code path (snapshot_download, offline mode) reads SAEs that were never downloaded."""

import hashlib
import os
from pathlib import Path


def put_in_hf_cache(hub_cache: Path, repo_id: str, folder: Path, subfolder: str = "", commit: str | None = None,
                    ref: str = "main") -> str:
    """Every file of `folder` as `<subfolder>/<name>` of `repo_id` at `commit` (default: derived from the files),
    `ref` pointing at it. Returns the commit sha."""
    repo = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    commit = commit or hashlib.sha1(b"".join(p.read_bytes() for p in files)).hexdigest()
    for path in files:
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()  # LFS files are stored under their sha256
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / subfolder / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return commit
