"""A GGUF file as a plain HF folder, converted once and cached: transformers and vLLM then load the same weights.

De-quantising the embedded GGUF takes most of a model load (~18 s of ~20 s on 2 cores), and vLLM cannot read a
GGUF Llama without a plugin; the folder (float32 safetensors + tokenizer) is written once per GGUF content, under
$REASONING_SAE_CACHE (default ~/.cache/reasoning_sae), atomically and under a file lock so that concurrent
processes (pytest workers, Hydra jobs) convert it at most once."""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

FORMAT = "hf-v1"  # bump when the folder's layout or contents change


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reasoning_sae"
    return Path(os.environ.get("REASONING_SAE_CACHE", default)).expanduser()


def _digest(path: Path) -> str:
    sha = hashlib.sha256(FORMAT.encode())
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def hf_folder(gguf: Path) -> Path:
    """The HF folder holding `gguf`'s weights (float32) and tokenizer; converted on first use."""
    gguf = Path(gguf).resolve()
    target = cache_root() / "gguf" / f"{gguf.stem}-{_digest(gguf)}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").is_file():
            _convert(gguf, target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The de-quantised weights are plain tensors; without its quantisation record the model saves as usual.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
