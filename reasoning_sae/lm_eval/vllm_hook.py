"""The vLLM side of steering, free of any vLLM import so it is tested here: vLLM's `LlamaDecoderLayer` returns
`(hidden_states, residual)` and the residual stream after the layer is their sum (DIGEST 5.3)."""

import torch

from reasoning_sae.steering import SteeringVectors


class VLLMSteeringHook:
    """Forward hook for a vLLM decoder layer: steer resid_post = hidden_states + residual."""

    def __init__(self, vectors: SteeringVectors):
        self.vectors = vectors

    def __call__(self, _module, _args, output):
        hidden, residual = output
        update = self.vectors.update(hidden + residual if residual is not None else hidden)
        return hidden + update.to(hidden.dtype), residual


def install(model: torch.nn.Module, layer: int, vectors: SteeringVectors) -> None:
    """Runs inside each vLLM worker (via LLM.apply_model): move the vectors to the layer and hook it."""
    target = model.model.layers[layer]
    param = next(target.parameters())
    moved = SteeringVectors(*(t.to(param.device, param.dtype) if t is not None else None for t in (
        vectors.vectors_KD, vectors.enc_KD, vectors.enc_bias_K, vectors.targets_K, vectors.b_dec_D)), vectors.mode)
    target.register_forward_hook(VLLMSteeringHook(moved))
