"""Steered model classes for vLLM: the rank-1 update inside the model's forward, so vLLM's compilation (and CUDA
graphs on a GPU) stays on. Registered by the `reasoning_sae` vLLM plugin (vllm_plugin.py) and selected with
`hf_overrides={"architectures": ["SteeredLlamaForCausalLM"], "reasoning_sae_layer": L}`.

Only the slot's buffers change between cells (vllm_hook.SteeringSlot); the compiled graph never branches on
them. The per-token position mask is computed in the uncompiled outer forward from the batch layout."""

import torch
from vllm.forward_context import get_forward_context, is_forward_context_available
from vllm.model_executor.models.llama import LlamaDecoderLayer, LlamaForCausalLM
from vllm.model_executor.models.utils import extract_layer_index

from reasoning_sae.lm_eval.vllm_hook import MAX_FEATURES, SteeringSlot, token_prompt_lengths

LAYER_KEY, FEATURES_KEY = "reasoning_sae_layer", "reasoning_sae_max_features"


def slot_size(vllm_config) -> int:
    """Rows of the mask: the most tokens one forward can see (CUDA-graph padding included)."""
    capture = vllm_config.compilation_config.max_cudagraph_capture_size or 0
    return max(vllm_config.scheduler_config.max_num_batched_tokens, capture)


def new_slot(vllm_config) -> SteeringSlot:
    hf = vllm_config.model_config.hf_config
    return SteeringSlot(hf.hidden_size, slot_size(vllm_config), getattr(hf, FEATURES_KEY, MAX_FEATURES),
                        dtype=vllm_config.model_config.dtype)


def flat_prompt_lengths(slot: SteeringSlot, n_tokens: int) -> torch.Tensor | None:
    """Each token's prompt length in this forward, or None where the layout is unknown (warm-up, no worker
    extension) or not needed (every position steered and nothing counted)."""
    if not slot.active or (slot.positions == "all" and not slot.count_tokens):
        return None
    if getattr(slot, "batch_prompt_lengths", None) is None or not is_forward_context_available():
        return None
    metadata = get_forward_context().attn_metadata
    if not isinstance(metadata, dict) or not metadata:
        return None  # warm-up passes; microbatched (DBO) layouts are lists
    first = next(iter(metadata.values()))
    query_start_loc = getattr(first, "query_start_loc_cpu", None)
    query_start_loc = (first.query_start_loc if query_start_loc is None else query_start_loc).cpu().numpy()
    lengths = token_prompt_lengths(query_start_loc, slot.batch_prompt_lengths())
    return lengths[:n_tokens]


class SteeredLlamaDecoderLayer(LlamaDecoderLayer):
    """A Llama decoder layer; the one at `reasoning_sae_layer` adds the slot's update to its output hidden_states
    (the MLP output; hidden_states + residual is resid_post), f_i read from their sum or, for site mlp_out, from
    hidden_states alone."""

    def __init__(self, vllm_config, prefix: str = "", **kwargs):
        super().__init__(vllm_config=vllm_config, prefix=prefix, **kwargs)
        steered = getattr(vllm_config.model_config.hf_config, LAYER_KEY, None)
        self.steering = new_slot(vllm_config) if extract_layer_index(prefix) == steered else None

    def forward(self, positions, hidden_states, residual, **kwargs):
        hidden_states, residual = super().forward(positions, hidden_states, residual, **kwargs)
        if self.steering is not None:
            hidden_states = self.steering(hidden_states, residual)
        return hidden_states, residual


class SteeredLlamaForCausalLM(LlamaForCausalLM):
    """LlamaForCausalLM whose decoder layer `reasoning_sae_layer` steers (same weights, same checkpoints)."""

    def __init__(self, *, vllm_config, prefix: str = "", **kwargs):
        layer = getattr(vllm_config.model_config.hf_config, LAYER_KEY, None)
        n_layers = vllm_config.model_config.hf_config.num_hidden_layers
        if layer is None or not 0 <= int(layer) < n_layers:
            raise ValueError(f"SteeredLlamaForCausalLM needs hf_overrides {LAYER_KEY} in 0..{n_layers - 1}, "
                             f"got {layer!r}")
        super().__init__(vllm_config=vllm_config, prefix=prefix, layer_type=SteeredLlamaDecoderLayer)
        self.steering = self.model.layers[int(layer)].steering

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        self.steering.prepare(positions, flat_prompt_lengths(self.steering, positions.shape[0]))
        return super().forward(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)
