"""Language models: loading (`load_lm`), hook names and early-stopped activation reads."""

from reasoning_sae.lazy import exports

__all__ = ["ActivationBatch", "HookPoint", "LanguageModel", "ModelConfig", "load_lm", "model_config", "parse_hook", "resid_post"]
__getattr__, __dir__ = exports(__name__, {
    "ModelConfig": "reasoning_sae.models.config", "model_config": "reasoning_sae.models.config",
    "HookPoint": "reasoning_sae.models.hooks", "parse_hook": "reasoning_sae.models.hooks",
    "resid_post": "reasoning_sae.models.hooks",
    "ActivationBatch": "reasoning_sae.models.lm", "LanguageModel": "reasoning_sae.models.lm", "load_lm": "reasoning_sae.models.lm",
})
