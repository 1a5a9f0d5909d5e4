"""`LanguageModel`: a transformers causal LM plus its tokenizer, with early-stopped activation reads."""

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from reasoning_sae.errors import UserError
from reasoning_sae.models.config import ModelConfig, model_config
from reasoning_sae.models.hooks import HookPoint, parse_hook
from reasoning_sae.models.loading import load_hf
from reasoning_sae.models.positions import keep_mask


class _StopForward(Exception):
    """Raised by a hook once the deepest requested layer has run, so later layers and the LM head never do."""


class ActivationBatch(NamedTuple):
    """One batch of `LanguageModel.iter_activations`."""

    start: int
    """Index of the batch's first sequence in the token ids."""
    ids_BS: torch.Tensor
    """Its token ids (long, on the model's device)."""
    keep_BS: torch.Tensor
    """True where a position counts (`keep_mask`: not an ignored id, not a sink position), on the model's device."""
    acts: torch.Tensor | dict[str, torch.Tensor]
    """Activations [B, S, d_model] at the hook, or a dict by hook name for several hooks (as `activations`)."""


def _hidden(output) -> torch.Tensor:
    # Decoder layers return a tensor in transformers >= 4.56 and a tuple before.
    return output[0] if isinstance(output, tuple) else output


class LanguageModel:
    """The underlying objects stay public (`.model`, `.tokenizer`); this class adds what the stages share."""

    def __init__(self, model, tokenizer, config: ModelConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.activation_cache = None
        """An `ActivationCache` that `iter_activations` reads and fills (None: always run the model)."""
        self._check_shape()

    @property
    def layers(self) -> torch.nn.ModuleList:
        return self.model.base_model.layers

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def bos_token_id(self) -> int | None:
        return self.config.bos_token_id if self.config.bos_token_id is not None else self.tokenizer.bos_token_id

    @property
    def eos_token_id(self) -> int | None:
        return self.config.eos_token_id if self.config.eos_token_id is not None else self.tokenizer.eos_token_id

    def _check_shape(self) -> None:
        for key, actual in (("n_layers", self.n_layers), ("d_model", self.d_model)):
            expected = getattr(self.config, key)
            if expected is not None and expected != actual:
                raise UserError(
                    f"model {self.config.name!r} has {key}={actual} but its config says {expected}: fix model.{key}"
                )

    def hook_point(self, hook: str) -> HookPoint:
        return parse_hook(hook, self.n_layers)

    # no_grad, not inference_mode: inference tensors cannot be saved for backward, so `sae.encode(acts)` with the
    # SAE's parameters requiring grad (training, notebooks) would fail outside a no_grad block. The forward costs
    # the same under either mode (no autograd graph is recorded).
    @torch.no_grad()
    def activations(
        self,
        token_ids: torch.Tensor | Sequence,
        hook: str | Sequence[str] = "blocks.0.hook_resid_post",
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Residual-stream activations [batch, seq, d_model] at `hook` (a dict by name for several hooks),
        from one forward pass that stops after the deepest layer needed. Ordinary tensors without grad: usable
        in autograd-enabled code (e.g. as the input of an SAE being trained)."""
        points = [self.hook_point(h) for h in ([hook] if isinstance(hook, str) else hook)]
        ids_BS = torch.as_tensor(token_ids, device=self.device)
        ids_BS = ids_BS.unsqueeze(0) if ids_BS.dim() == 1 else ids_BS
        captured: dict[str, torch.Tensor] = {}
        handles = [self._capture(p, captured) for p in points]
        handles.append(self._stopper(max(p.last_layer_needed for p in points)))
        try:
            self.model.base_model(input_ids=ids_BS, attention_mask=attention_mask, use_cache=False)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return captured[points[0].name] if isinstance(hook, str) else {p.name: captured[p.name] for p in points}

    def iter_activations(
        self,
        token_ids: torch.Tensor | np.ndarray | Sequence,
        hooks: str | Sequence[str],
        batch_sequences: int,
        ignore_token_ids: Sequence[int] = (),
        sink_positions: int = 0,
        progress: str | None = None,
    ) -> Iterator[ActivationBatch]:
        """`activations` over `token_ids` [n_sequences, seq], `batch_sequences` sequences at a time in order, each
        batch with its keep mask. `progress`, when given, is the description of a progress bar over the batches."""
        if batch_sequences < 1:
            raise UserError(f"batch_sequences={batch_sequences}: read at least 1 sequence per forward pass")
        cache, key, kept = self.activation_cache if isinstance(hooks, str) else None, None, None
        if cache is not None:
            ids_NS = np.asarray(token_ids.cpu() if isinstance(token_ids, torch.Tensor) else token_ids)
            if cache.fits(ids_NS.size * self.d_model, self.dtype):
                key = cache.key(self, ids_NS, hooks, batch_sequences)
                if not cache.path(key).is_file():
                    kept = torch.empty((*ids_NS.shape, self.d_model), dtype=self.dtype)
            else:
                cache = None
        starts = range(0, len(token_ids), batch_sequences)
        for start in tqdm(starts, desc=progress, disable=progress is None):
            rows = token_ids[start : start + batch_sequences]
            rows = rows if isinstance(rows, torch.Tensor) else np.asarray(rows)
            ids_BS = torch.as_tensor(rows, dtype=torch.long, device=self.device)
            keep_BS = keep_mask(ids_BS, ignore_token_ids, sink_positions)
            if cache is not None and kept is None:
                acts = cache.read(key, start, start + len(ids_BS), self.device)
            else:
                acts = self.activations(ids_BS, hook=hooks)
                if kept is not None:
                    kept[start : start + len(ids_BS)] = acts.cpu()
            yield ActivationBatch(start, ids_BS, keep_BS, acts)
        if kept is not None:
            cache.write(key, kept)

    def _capture(self, point: HookPoint, into: dict):
        layer = self.layers[point.layer]
        if point.kind == "hook_resid_post":
            return layer.register_forward_hook(lambda _m, _a, out: into.__setitem__(point.name, _hidden(out)))

        def pre(_m, args, kwargs):
            into[point.name] = args[0] if args else kwargs["hidden_states"]

        return layer.register_forward_pre_hook(pre, with_kwargs=True)

    def _stopper(self, last_layer: int):
        # Registered after the capture hooks, so on the same layer it fires after they have stored the output.
        def stop(*_):
            raise _StopForward

        if last_layer < 0:
            return self.layers[0].register_forward_pre_hook(stop)
        return self.layers[last_layer].register_forward_hook(stop)

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        """The generation prompt for one user message, in the model's own chat template."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @torch.inference_mode()
    def generate(self, prompts: str | Sequence[str], max_new_tokens: int = 256, chat: bool = True,
                 **kwargs) -> str | list[str]:
        """Completions (greedy unless sampling kwargs say otherwise): a list of strings for a list of prompts, one
        string for one prompt given as a string. `chat=True` wraps each prompt in the model's chat template."""
        if isinstance(prompts, str):
            return self.generate([prompts], max_new_tokens, chat, **kwargs)[0]
        if not all(isinstance(p, str) for p in prompts):
            raise UserError("lm.generate takes a prompt string or a list of prompt strings")
        texts = [self.chat_prompt(p) if chat else p for p in prompts]
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat).to(self.device)
        kwargs.setdefault("do_sample", False)
        out = self.model.generate(
            **batch, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, **kwargs
        )
        return self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def load_lm(model: "str | ModelConfig | dict" = "smollm2-135m-instruct", **overrides) -> LanguageModel:
    """Load a model by alias, hub id (pinned revision from conf/model when known), local dir or .gguf path.

    Keyword overrides set any ModelConfig field, e.g. `load_lm("org/name", revision="abc", dtype="bfloat16")`.
    """
    cfg = model_config(model, **overrides)
    hf_model, tokenizer = load_hf(cfg)
    return LanguageModel(hf_model, tokenizer, cfg)
