"""Worker extension for vLLM (`worker_extension_cls`): the methods the engine calls in every worker through
`LLM.collective_rpc`, with plain data only, so nothing needs VLLM_ALLOW_INSECURE_SERIALIZATION."""

import functools

import torch

from reasoning_sae.lm_eval.vllm_hook import SlotHook, SteeringSlot
from reasoning_sae.steering import SteeringVectors

SLOT = "reasoning_sae_slot"


class SteeringWorkerExtension:
    """Mixed into vLLM's worker class (`self` is the worker, `self.model_runner` its runner)."""

    def _steering_slot(self) -> SteeringSlot:
        model = self.model_runner.get_model()
        slot = getattr(model, "steering", None)
        slot = slot if isinstance(slot, SteeringSlot) else getattr(model, SLOT, None)
        if slot is None:
            raise RuntimeError("this engine has no steering slot: build it with reasoning_sae.lm_eval.vllm_engine")
        runner = self.model_runner
        slot.batch_prompt_lengths = lambda: runner.input_batch.num_prompt_tokens
        return slot

    def steering_attach_hook(self, layer: int, max_features: int) -> str:
        """Eager fallback for an architecture without a steered class: a slot hooked on decoder layer `layer`."""
        from reasoning_sae.lm_eval.vllm_model import flat_prompt_lengths, slot_size

        model = self.model_runner.get_model()
        if getattr(model, SLOT, None) is None:
            target = model.model.layers[layer]
            param = next(target.parameters())
            d_model = model.config.hidden_size
            slot = SteeringSlot(d_model, slot_size(self.vllm_config), max_features, param.dtype, param.device)
            setattr(model, SLOT, slot)
            self._steering_slot()  # gives the slot the runner's prompt lengths
            target.register_forward_hook(SlotHook(slot, functools.partial(flat_prompt_lengths, slot)))
        return type(model).__name__

    def steering_set(self, payload: dict | None, count_tokens: bool = False) -> None:
        """Load steering rows (`payload` from `vectors_payload`, None for none) into the slot, in place."""
        slot = self._steering_slot()
        vectors = None
        if payload is not None:
            device, dtype = slot.targets_G.device, slot.targets_G.dtype
            tensors = {k: None if v is None else torch.tensor(v, device=device, dtype=dtype)
                       for k, v in payload["tensors"].items()}
            vectors = SteeringVectors(**tensors, mode=payload["mode"], site=payload.get("site", "resid_post"))
        slot.load(vectors, payload["positions"] if payload else "all")
        slot.count_tokens = count_tokens

    def steering_counts(self) -> dict:
        """Tokens steered since the last `steering_set`, by kind (counted only with count_tokens=True)."""
        return dict(self._steering_slot().counts)


def vectors_payload(vectors: SteeringVectors, positions: str) -> dict:
    """`vectors` as nested lists (msgpack-safe) for `steering_set`."""
    names = ("vectors_GD", "enc_GD", "enc_bias_G", "targets_G", "b_dec_D", "threshold_G")
    tensors = {n: None if getattr(vectors, n) is None else getattr(vectors, n).float().cpu().tolist() for n in names}
    return {"tensors": tensors, "mode": vectors.mode, "site": vectors.site, "positions": positions}
