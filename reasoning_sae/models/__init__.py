"""Language models: loading (`load_lm`), hook names and early-stopped activation reads."""

from reasoning_sae.models.config import ModelConfig, model_config
from reasoning_sae.models.hooks import HookPoint, parse_hook, resid_post
from reasoning_sae.models.lm import LanguageModel, load_lm

__all__ = ["HookPoint", "LanguageModel", "ModelConfig", "load_lm", "model_config", "parse_hook", "resid_post"]
