"""The `reasoning_sae` vLLM plugin (entry point group `vllm.general_plugins`, see pyproject.toml): vLLM calls
`register` in every process it starts, before any model loads. Lazy `module:Class` strings keep it import-safe."""

STEERED_ARCHITECTURES = {"LlamaForCausalLM": "SteeredLlamaForCausalLM"}


def register() -> None:
    from vllm import ModelRegistry

    for steered in STEERED_ARCHITECTURES.values():
        if steered not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(steered, f"reasoning_sae.lm_eval.vllm_model:{steered}")
