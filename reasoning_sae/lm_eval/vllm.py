"""`sae_steered_vllm`: lm-eval's vLLM model with the same rank-1 steering as `sae_steered`, for paper-scale
(32k-token) generation. Model args as `sae_steered` (see model.py), plus:
  steer_layer   steer at this layer with no SAE (the unsteered baseline on the same engine as the steered cells)
  max_features  features one engine can steer at once (default 8)
  compiled      true: steer inside the model's forward (vllm_model.py), compilation and CUDA graphs on;
                false: a Python hook in eager mode (also the fallback for architectures without a steered class)
  count_tokens  count steered tokens per kind (diagnostics: a device sync per step)

The update is `reasoning_sae.steering.SteeringVectors`'s, held in `vllm_hook.SteeringSlot`; vLLM's decoder layer
returns (hidden_states, residual), hidden_states being the MLP output, and resid_post is their sum. site=resid_post
reads f_i from the sum; site=mlp_out from hidden_states alone, as the released code did (it steered output[0]:
DIGEST 5.3). Either way the update is added to hidden_states, i.e. to resid_post. One engine per process serves
every cell (vllm_engine.py): a cell only rewrites the slot's buffers through the worker extension, so `positions`,
`site` and word bans are per cell too."""

import contextlib
from unittest import mock

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.wordban import SCOPES, banned_sequences
from reasoning_sae.lm_eval import vllm_engine
from reasoning_sae.lm_eval.model import read_ban, steering_spec, think_end_id
from reasoning_sae.lm_eval.vllm_hook import MAX_FEATURES
from reasoning_sae.lm_eval.vllm_worker import vectors_payload
from reasoning_sae.models.hooks import parse_hook
from reasoning_sae.models.loading import model_path
from reasoning_sae.steering import POSITIONS, check_site, steering_vectors

_VLLM = vllm_engine.lm_eval_vllm_module()


def _truthy(value) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _model_shape(model_dir: str, trust_remote_code: bool = False) -> tuple[int, int]:
    """(layers, d_model) of a model vLLM can run, or a one-line error before any engine starts."""
    from transformers import AutoConfig
    from vllm import ModelRegistry

    try:
        cfg = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"vLLM cannot load model {model_dir!r} ({first}): pass a local HF model directory, a cached "
                        f"hub id or the demo alias smollm2-135m-instruct") from None
    archs = list(getattr(cfg, "architectures", None) or [])
    if not set(archs) & set(ModelRegistry.get_supported_archs()):
        raise UserError(f"vLLM cannot run model {model_dir!r}: its architectures {archs} are not supported by vLLM "
                        f"{vllm_engine.require_vllm().__version__}; use benchmark.engine=hf")
    return cfg.num_hidden_layers, cfg.hidden_size


@_VLLM.register_model("sae_steered_vllm")
class SteeredVLLM(_VLLM.VLLM):
    """VLLM with SAE features steered (every position, the prompt or the generated tokens) and optional word bans."""

    def __init__(self, pretrained="smollm2-135m-instruct", sae=None, features=None, gamma=2.0, mode="add",
                 positions="all", f_max=None, ban=None, ban_scope="thinking", steer_layer=None,
                 max_features=MAX_FEATURES, compiled=True, count_tokens=False, site="resid_post", **kwargs):
        if int(kwargs.get("data_parallel_size", 1)) > 1:
            raise UserError("sae_steered_vllm steers one engine: use tensor_parallel_size, not data_parallel_size")
        model_dir = model_path(str(pretrained))
        n_layers, d_model = _model_shape(model_dir, _truthy(kwargs.get("trust_remote_code", False)))
        payload, layer = self._steering(sae, features, gamma, mode, positions, f_max, n_layers, d_model, site)
        layer = layer if layer is not None else (None if steer_layer in (None, "") else int(steer_layer))
        if ban and ban_scope not in SCOPES:
            raise UserError(f"unknown ban scope {ban_scope!r}: use one of {SCOPES}")
        args = vllm_engine.engine_args(model_dir, layer, int(max_features), _truthy(compiled), **kwargs)
        with mock.patch.object(_VLLM, "LLM", vllm_engine.engine):  # lm-eval builds the engine inside __init__
            super().__init__(pretrained=model_dir, **args)
        self.steer_payload, self.count_tokens = payload, _truthy(count_tokens)
        self.banned = banned_sequences(self.tokenizer, read_ban(ban)) if ban else []
        self.ban_scope = ban_scope
        self.think_end_id = think_end_id(self.tokenizer)

    @staticmethod
    def _steering(sae, features, gamma, mode, positions, f_max, n_layers: int, d_model: int, site="resid_post"):
        """(payload for the worker extension, layer) or (None, None) without an SAE; checked before any engine."""
        spec = steering_spec(sae, features, gamma, mode, positions, f_max, site)
        if spec is None:
            return None, None
        if positions not in POSITIONS:
            raise UserError(f"unknown steering positions {positions!r}: use one of {POSITIONS}")
        loaded = spec["sae"]
        point = parse_hook(loaded.hook_name(), n_layers)
        check_site(site, point.kind)
        if point.kind != "hook_resid_post":
            raise UserError(f"steering reads blocks.L.hook_resid_post, not {point.name}")
        if loaded.d_in != d_model:
            raise UserError(f"the SAE reads {loaded.d_in}-dim activations but the model's residual stream has "
                            f"{d_model}: use an SAE trained on this model")
        vectors = steering_vectors(loaded, spec["feature"], spec["gamma"], mode, spec["f_max"], site=site)
        return vectors_payload(vectors, positions), point.layer

    @contextlib.contextmanager
    def _steered(self):
        steered = self.model_args.get("worker_extension_cls") == vllm_engine.WORKER_EXTENSION
        if steered:
            self.model.collective_rpc("steering_set", args=(self.steer_payload, self.count_tokens))
        try:
            yield
        finally:
            if steered and not self.count_tokens:
                self.model.collective_rpc("steering_set", args=(None,))

    def steering_counts(self) -> dict:
        """Steered tokens by kind since this model last ran (needs count_tokens=true)."""
        return self.model.collective_rpc("steering_counts")[0]

    def _model_generate(self, requests, generate=False, sampling_params=None, **kwargs):
        if generate and sampling_params is not None and self.banned:
            params = sampling_params if isinstance(sampling_params, list) else [sampling_params]
            for p in params:
                p.extra_args = {**(p.extra_args or {}), "reasoning_sae_ban": {
                    "sequences": self.banned, "think_end_id": self.think_end_id if self.ban_scope == "thinking" else None}}
        with self._steered():
            return super()._model_generate(requests, generate=generate, sampling_params=sampling_params, **kwargs)
