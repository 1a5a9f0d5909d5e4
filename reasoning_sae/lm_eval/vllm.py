"""`sae_steered_vllm`: lm-eval's vLLM model with the same rank-1 steering as `sae_steered`, for paper-scale
(32k-token) generation. Model args as `sae_steered` (see model.py; `vector` too), plus:
  steer_layer   steer at this layer with no SAE (the unsteered baseline on the same engine as the steered cells)
  max_features  features one engine can steer at once (default 8)
  compiled      true: steer inside the model's forward (vllm_model.py), compilation and CUDA graphs on;
                false: a Python hook in eager mode (also the fallback for architectures without a steered class)
  count_tokens  count steered tokens per kind (diagnostics: a device sync per step)

The update is `reasoning_sae.steering.SteeringVectors`'s, held in `vllm_hook.SteeringSlot`; vLLM's decoder layer
returns (hidden_states, residual), hidden_states being the MLP output, and resid_post is their sum. site=resid_post
reads f_i from the sum; site=mlp_out from hidden_states alone, as the released code did (it steered output[0] in
sae_utils.py). Either way the update is added to hidden_states, i.e. to resid_post. One engine per process serves
every cell (vllm_engine.py): a cell only rewrites the slot's buffers through the worker extension, so `positions`,
`site`, word bans and budget forcing are per cell too. Budget forcing (min_thinking_tokens, force_word, max_forces:
evaluate/budget.py's rule, as the HF engine) generates again, from prompt + kept thinking + word, only the requests
that tried to stop thinking early, as s1's vLLM code does (prefix caching stays off: the cache does not know the
steering)."""

import contextlib
from unittest import mock

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.budget import force_rounds
from reasoning_sae.evaluate.wordban import banned_sequences
from reasoning_sae.lm_eval import vllm_engine
from reasoning_sae.lm_eval.model import (Forcer, bool_arg, check_model_args, check_vllm_args, eos_ids, forcing_args,
                                         int_arg, think_end_id)
from reasoning_sae.lm_eval.vllm_hook import MAX_FEATURES
from reasoning_sae.lm_eval.vllm_worker import vectors_payload
from reasoning_sae.models.hooks import parse_hook
from reasoning_sae.models.loading import model_path
from reasoning_sae.steering import POSITIONS, check_site, steering_vectors, vector_steering

_VLLM = vllm_engine.lm_eval_vllm_module()


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
                 max_features=MAX_FEATURES, compiled=True, count_tokens=False, site="resid_post", vector=None,
                 vector_norm=None, vector_hook=None, **kwargs):
        # Every argument that does not need the model is checked before the model is even located (a GGUF is
        # converted on first use), the rest against its config before any engine starts.
        check_vllm_args(steer_layer=steer_layer, max_features=max_features, compiled=compiled,
                        count_tokens=count_tokens, **kwargs)
        spec, words, config = check_model_args(pretrained, sae, features, gamma, mode, positions, f_max, ban,
                                               ban_scope, site=site, vector=vector, vector_norm=vector_norm,
                                               vector_hook=vector_hook)  # dtype, device: vLLM's (it ignores device)
        forcing = forcing_args(kwargs, positions if spec else "all")  # out of kwargs: they are not vLLM's
        max_features = int_arg(max_features, "max_features") or MAX_FEATURES
        steer_layer = int_arg(steer_layer, "steer_layer")
        model_dir = model_path(str(pretrained))
        trust_remote_code = bool_arg(kwargs.get("trust_remote_code", False), "trust_remote_code")
        n_layers, d_model = _model_shape(model_dir, trust_remote_code)
        payload, layer = self._payload(spec, positions, n_layers, d_model, site)
        layer = layer if layer is not None else steer_layer
        args = vllm_engine.engine_args(model_dir, layer, max_features, bool_arg(compiled, "compiled"), **kwargs)
        with mock.patch.object(_VLLM, "LLM", vllm_engine.engine):  # lm-eval builds the engine inside __init__
            super().__init__(pretrained=model_dir, **args)
        self.steer_payload, self.count_tokens = payload, bool_arg(count_tokens, "count_tokens")
        self.banned = banned_sequences(self.tokenizer, words) if words else []
        self.ban_scope = ban_scope
        self.think_end, self.think_end_id = config.think_end, think_end_id(self.tokenizer, config)
        self.forcer = None if forcing is None else Forcer(forcing, self.tokenizer, self.think_end,
                                                          eos_ids(self.tokenizer, config.eos_token_id))
        self.forces: list[int] = []  # per generated sample, in generation order: times budget forcing forced it

    @staticmethod
    def _payload(spec: dict | None, positions, n_layers: int, d_model: int, site="resid_post"):
        """`steering_spec`'s result checked against the model's shape, as (worker payload, layer)."""
        if spec is None:
            return None, None
        if positions not in POSITIONS:
            raise UserError(f"unknown steering positions {positions!r}: use one of {POSITIONS}")
        if "vector_D" in spec:  # a steering vector: one `add` row in the same slot
            point = parse_hook(spec["hook"], n_layers)
            if point.kind != "hook_resid_post" or len(spec["vector_D"]) != d_model:
                raise UserError(f"the steering vector ({len(spec['vector_D'])} dimensions at {spec['hook']}) does not "
                                f"fit this model (blocks.L.hook_resid_post, d_model {d_model}): use one computed on it")
            vectors = vector_steering(spec["vector_D"], spec["gamma"], spec["norm"])
            return vectors_payload(vectors, positions), point.layer
        loaded = spec["sae"]
        point = parse_hook(loaded.hook_name(), n_layers)
        check_site(site, point.kind)
        if point.kind != "hook_resid_post":
            raise UserError(f"steering reads blocks.L.hook_resid_post, not {point.name}")
        if loaded.d_in != d_model:
            raise UserError(f"the SAE reads {loaded.d_in}-dim activations but the model's residual stream has "
                            f"{d_model}: use an SAE trained on this model")
        vectors = steering_vectors(loaded, spec["feature"], spec["gamma"], spec["mode"], spec["f_max"], site=site)
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
            outputs = super()._model_generate(requests, generate=generate, sampling_params=sampling_params, **kwargs)
            if generate and sampling_params is not None and self.forcer is not None:
                outputs = self._forced(requests, outputs, sampling_params)
            return outputs

    def _forced(self, requests, outputs, sampling_params):
        """Budget forcing (evaluate/budget.py): the requests that tried to stop thinking early generate again from
        prompt + kept thinking + word (their own sampling params, the budget left, at least one token: s1's
        min_tokens=1), until none does; their completions then hold every generated id and its text."""
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(requests)
        base = super()._model_generate

        def generate(rows, prefixes):
            again = []
            for i, prefix in zip(rows, prefixes, strict=True):
                p = params[i].clone()
                p.max_tokens, p.min_tokens = params[i].max_tokens - len(prefix), 1
                again.append(p)
            new = base([list(requests[i]) + prefix for i, prefix in zip(rows, prefixes, strict=True)],
                       generate=True, sampling_params=again)
            return [self._read(o.outputs[0]) for o in new]

        completions = [o.outputs[0] for o in outputs]
        final, forces = force_rounds([self._read(c) for c in completions], [p.max_tokens for p in params],
                                     self.forcer, generate, [list(p.stop or []) for p in params])
        for completion, ids, n in zip(completions, final, forces, strict=True):
            if n:
                completion.token_ids, completion.text = ids, self.tokenizer.decode(ids, skip_special_tokens=True)
        self.forces += forces
        return outputs

    def _read(self, completion) -> list[int]:
        """A completion's ids as the rule reads them: one that vLLM ended with an end-of-sequence or stop token id
        (in its token_ids or not) ends with the tokenizer's EOS id."""
        ids = list(completion.token_ids)
        if completion.finish_reason == "stop" and not isinstance(completion.stop_reason, str):
            if ids and (ids[-1] in self.forcer.eos_ids or ids[-1] == completion.stop_reason):
                ids = ids[:-1]
            ids.append(self.tokenizer.eos_token_id)
        return ids
