"""`sae_steered`: lm-eval's HF model with SAE features steered during every forward pass (paper Sec. 4.3).

Model args (lm-eval's `key=value,...`; lists joined with `+`):
  pretrained   model alias, hub id, local dir or .gguf path (resolved by `reasoning_sae.load_lm`)
  sae          SAE directory (SAELens format); omit for the unsteered baseline
  features     feature ids, e.g. `features=3942` or `features=3942+4395`
  gamma        strength(s), one or one per feature (paper: 2)
  mode         add (paper Eq. 7) | clamp (released code)
  positions    all | prompt | generated
  site         resid_post (paper v2) | mlp_out (released code: clamp reads f_i from layer L's MLP output; same as
               resid_post for add)
  f_max        a number, one per feature, or an interpret-stage `f_max.json`; default: the SAE's training record
  vector       a steering vector in place of sae/features (DiffMean: the score stage's diffmean.safetensors; or a
               .npy): x + gamma * vector_norm * v / ||v||, or x + gamma * v without vector_norm (mode add)
  vector_norm  the norm of the update at gamma 1 (the evaluate stage: f_max * ||W_dec[i]|| of the reference feature)
  vector_hook  where the vector is added (blocks.L.hook_resid_post); default: the hook its .safetensors records
  ban          words to ban while thinking (Table 2): `+`-joined surface forms or a vocabulary .json file
  ban_scope    thinking | all
  min_thinking_tokens  budget forcing (evaluate/budget.py, s1): a sample that tries to stop thinking (think_end, or
               the end of sequence while thinking) with fewer thinking tokens gets `force_word` and generates on
  force_word   appended in place of the early stop (default Wait)
  max_forces   times one sample may be forced (default 1)
Everything else goes to lm-eval's HFLM (batch_size, max_length, ...). Every argument is checked before the model
loads (a bad one is one `error: ...` line from the CLI). On a CPU, batch_size=auto is CPU_AUTO_BATCH_SIZE."""

import contextlib
import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from transformers import LogitsProcessorList

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.budget import MAX_FORCES, WORD, BudgetForcing, Forcer, budget_forcing, force_rounds
from reasoning_sae.evaluate.wordban import SCOPES, banned_sequences, ban_processor
from reasoning_sae.models import ModelConfig, load_lm, model_config, parse_hook
from reasoning_sae.models.loading import resolve_device, resolve_dtype, resolve_source
from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.steering import MODES, POSITIONS, check_site, steer, steer_vector, steering_vectors, vector_steering
from reasoning_sae.steering.vector import load_vector
from reasoning_sae.vocab.vocabulary import load_vocabulary


log = logging.getLogger(__name__)

CPU_AUTO_BATCH_SIZE = 8
"""What batch_size=auto (or auto:N) means on a CPU. lm-eval's search runs forward passes at the model's full context
length from max_batch_size (64) down until one fits in memory: on a GPU that finds the largest batch, on a CPU it
takes many minutes (every size fits) and finds 64, more than a CPU gains from. 8 is the demo's batch size."""


def split_list(value, cast=str, name: str = "value") -> list:
    """A model-arg list: a scalar, a `+`-joined string, or already a list."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split("+")
    try:
        return [cast(v) for v in items]
    except (TypeError, ValueError):
        raise UserError(f"cannot read {value!r} as a list of {cast.__name__} ({name}): give one value or join "
                        f"several with '+'") from None


def read_f_max(value, features: list[int]) -> list[float] | None:
    """f_max per feature from a number, a `+` list, or an interpret-stage f_max.json ({feature id: value})."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, Path)) and str(value).endswith(".json"):
        path = Path(value).expanduser()
        if not path.is_file():
            raise UserError(f"f_max file {value} does not exist: run the interpret stage (it writes "
                            f"artifacts/<experiment>/interpret/f_max.json) or pass f_max=<number>")
        try:
            table = json.loads(path.read_text())
            if not isinstance(table, dict):
                raise ValueError(f"a JSON object was expected, not {type(table).__name__}")
            values = {f: float(table[str(f)]) for f in features if str(f) in table}
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as err:
            raise UserError(f"f_max file {value} is not an interpret-stage f_max.json ({err}): write "
                            f'{{"<feature id>": <f_max>, ...}} or pass f_max=<number>') from None
        missing = [f for f in features if f not in values]
        if missing:
            raise UserError(f"{value} has no f_max for features {missing}: add them to interpret.extra_features "
                            f"and rerun the interpret stage, or pass f_max=<number>")
        return [values[f] for f in features]
    values = split_list(value, float, "f_max")
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"f_max must be finite, got {values}")
    return values


def read_ban(value) -> list[str]:
    """Surface forms to ban: a vocabulary .json file or `+`-joined strings."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return load_vocabulary(value) if str(value).endswith(".json") else str(value).split("+")


def ban_words(ban, ban_scope) -> list[str]:
    """The words a `ban`/`ban_scope` model-arg pair bans, checked (before any model loads)."""
    if ban_scope not in SCOPES:
        raise UserError(f"unknown ban scope {ban_scope!r}: use one of {SCOPES}")
    return read_ban(ban) if ban else []


def steering_spec(sae, features, gamma, mode, positions, f_max, site="resid_post") -> dict | None:
    """The steering model args as `steer(...)` keywords (None: no SAE, no steering), shared by both engines.
    Everything that does not need the model is checked here, before it loads: the SAE folder, the feature ids
    against its width, gamma, mode, positions, site and f_max."""
    check_site(site)
    if mode not in MODES:
        raise UserError(f"unknown steering mode {mode!r}: use one of {MODES}")
    if positions not in POSITIONS:
        raise UserError(f"unknown steering positions {positions!r}: use one of {POSITIONS}")
    features = split_list(features, int, "features")
    gammas = split_list(gamma, float, "gamma")
    if not gammas:
        raise UserError("gamma is empty: give gamma=<number> (the paper: 2), or one per feature joined with '+'")
    if not all(math.isfinite(g) for g in gammas):
        raise UserError(f"gamma must be finite, got {gammas}")
    if sae is None and features:
        raise UserError("features given without an SAE: add sae=<SAE directory> to the model args")
    if sae is None:
        return None
    if not features:
        raise UserError("sae given without features: add features=<id>[+<id>...] to the model args")
    loaded = sae if isinstance(sae, SparseAutoencoder) else SparseAutoencoder.load(Path(sae).expanduser())
    spec = {"sae": loaded, "feature": features, "gamma": gammas if len(gammas) > 1 else gammas[0],
            "mode": mode, "positions": positions, "f_max": read_f_max(f_max, features), "site": site}
    # feature ids against the SAE's width, one gamma/f_max or one per feature, an f_max where none is given
    steering_vectors(loaded, spec["feature"], spec["gamma"], mode, spec["f_max"], site=site)
    return spec


def vector_spec(vector, vector_norm, vector_hook, gamma, mode, positions, sae=None, features=None) -> dict:
    """The vector model args as `steer_vector(...)` keywords, checked before the model loads: the file (one 1-D float
    tensor, a hook), one finite gamma, the norm, mode add and no SAE features beside it."""
    if sae is not None or features not in (None, ""):
        raise UserError("vector= steers a given direction in place of SAE features: drop sae= and features=")
    if mode != "add":
        raise UserError(f"vector= steers as mode=add (x + gamma * vector_norm * v / ||v||), not {mode!r}: drop mode=")
    if positions not in POSITIONS:
        raise UserError(f"unknown steering positions {positions!r}: use one of {POSITIONS}")
    gammas = split_list(gamma, float, "gamma")
    if len(gammas) != 1:
        raise UserError(f"vector= takes one gamma, got {gammas}")
    norm = None if vector_norm in (None, "") else split_list(vector_norm, float, "vector_norm")
    if norm is not None and len(norm) != 1:
        raise UserError(f"vector_norm takes one number, got {norm}")
    loaded = load_vector(vector, vector_hook or None)
    spec = {"vector_D": loaded.vector_D, "hook": loaded.hook, "gamma": gammas[0], "norm": norm[0] if norm else None,
            "positions": positions}
    vector_steering(loaded.vector_D, spec["gamma"], spec["norm"])  # finite, non-zero where a norm is asked for
    return spec


def check_vector_against(spec: dict, model) -> None:
    """The vector's length and hook against a model config whose shape is known, before that model loads."""
    if model.n_layers is None or model.d_model is None:
        return
    if len(spec["vector_D"]) != model.d_model:
        raise UserError(f"the steering vector has {len(spec['vector_D'])} dimensions but the model's residual stream "
                        f"has {model.d_model}: use a vector computed on {model.name}")
    point = parse_hook(spec["hook"], model.n_layers)
    if point.kind != "hook_resid_post":
        raise UserError(f"steering reads blocks.L.hook_resid_post, not {point.name}")


def check_sae_against(spec: dict | None, model) -> None:
    """The SAE's width, hook layer and model name against a model config whose shape is known (conf/model gives
    n_layers and d_model for the known models), before that model loads; `steer` checks the loaded model again."""
    if spec is None or model.n_layers is None or model.d_model is None:
        return
    if spec["sae"].d_in != model.d_model:
        raise UserError(f"the SAE reads {spec['sae'].d_in}-dim activations but the model's residual stream has "
                        f"{model.d_model}: use an SAE trained on {model.name}")
    shape = SimpleNamespace(d_model=model.d_model, config=model,
                            hook_point=lambda hook: parse_hook(hook, model.n_layers))
    point = shape.hook_point(spec["sae"].hook_name(shape))
    check_site(spec["site"], point.kind)
    if point.kind != "hook_resid_post":
        raise UserError(f"steering reads blocks.L.hook_resid_post, not {point.name}")


def check_model_args(pretrained="smollm2-135m-instruct", sae=None, features=None, gamma=2.0, mode="add",
                     positions="all", f_max=None, ban=None, ban_scope="thinking", dtype=None, device=None,
                     site="resid_post", vector=None, vector_norm=None, vector_hook=None, **_engine_args):
    """Every `sae_steered` model arg that can be checked without loading the model (the vLLM engine's share of
    them too), as (steering spec or None, banned words, the model's config or None for a loaded LanguageModel).
    The CLI calls it before lm-eval builds anything; a bad arg is a UserError (one `error:` line)."""
    vectored = vector not in (None, "")
    steering = (vector_spec(vector, vector_norm, vector_hook, gamma, mode, positions, sae, features) if vectored
                else steering_spec(sae, features, gamma, mode, positions, f_max, site))
    words = ban_words(ban, ban_scope)
    forcing_args(_engine_args, positions if steering else "all")
    if hasattr(pretrained, "activations"):
        return steering, words, None
    overrides = {k: v for k, v in (("dtype", dtype), ("device", device)) if v not in (None, "auto")}
    config = model_config(str(pretrained), **overrides)
    resolve_source(config.name)
    resolve_dtype(config.dtype, resolve_device(config.device))
    check_vector_against(steering, config) if vectored else check_sae_against(steering, config)
    return steering, words, config


FORCING_ARGS = {"min_thinking_tokens": None, "force_word": WORD, "max_forces": MAX_FORCES}


def forcing_args(model_args: dict, positions="all") -> BudgetForcing | None:
    """The budget-forcing model args (FORCING_ARGS), taken out of `model_args` and checked, with its max_gen_toks
    (None: no min_thinking_tokens, no forcing); shared by both engines. A forced sample generates on from prompt +
    kept thinking as a new prompt, so steering it must not tell prompt from generated tokens: positions=all only."""
    given = {**FORCING_ARGS, **{k: model_args.pop(k) for k in FORCING_ARGS if k in model_args}}
    minimum = int_arg(given["min_thinking_tokens"], "min_thinking_tokens")
    if minimum is None:
        return None
    if positions != "all":
        raise UserError(f"budget forcing generates on from the kept thinking as a new prompt, which positions="
                        f"{positions} would steer as prompt: steer positions=all, or drop min_thinking_tokens")
    return budget_forcing(minimum, given["force_word"], int_arg(given["max_forces"], "max_forces"),
                          int_arg(model_args.get("max_gen_toks"), "max_gen_toks"))


def eos_ids(tokenizer, *more) -> set[int]:
    """The ids that end a sequence: the tokenizer's EOS and any of `more` (ids or lists of them; None skipped)."""
    found = {tokenizer.eos_token_id}
    for value in more:
        found.update(value if isinstance(value, (list, tuple, set)) else [value])
    return {int(i) for i in found if i is not None}


def int_arg(value, name: str) -> int | None:
    """An integer model arg (None when absent), or a one-line error."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise UserError(f"{name}={value!r} is not an integer: give a whole number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}={value!r} is not an integer: give a whole number") from None


def bool_arg(value, name: str) -> bool:
    """A true/false model arg, or a one-line error."""
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", "none", ""):
        return False
    raise UserError(f"{name}={value!r} is not true or false")


VLLM_INT_ARGS = ("steer_layer", "max_features", "data_parallel_size", "tensor_parallel_size")
VLLM_BOOL_ARGS = ("compiled", "count_tokens", "trust_remote_code")


def check_vllm_args(**model_args) -> None:
    """`sae_steered_vllm`'s own model args (its integers and switches), checked without importing vLLM; its steering
    args are `check_model_args`'s (dtype and device left out: they are vLLM's)."""
    for name in VLLM_INT_ARGS:
        int_arg(model_args.get(name), name)
    for name in VLLM_BOOL_ARGS:
        if name in model_args:
            bool_arg(model_args[name], name)
    if (int_arg(model_args.get("data_parallel_size"), "data_parallel_size") or 1) > 1:
        raise UserError("sae_steered_vllm steers one engine: use tensor_parallel_size, not data_parallel_size")


def think_end_id(tokenizer, model: ModelConfig) -> int | None:
    """model.think_end_token_id, else the id of model.think_end when it is one token of this tokenizer, else None
    (a ban then lasts the whole output)."""
    if model.think_end_token_id is not None:
        return model.think_end_token_id
    if model.think_end is None:
        return None
    ids = tokenizer.convert_tokens_to_ids(model.think_end)
    return ids if isinstance(ids, int) and ids != tokenizer.unk_token_id else None


def cpu_batch_size(batch_size, max_batch_size, lm):
    """batch_size as HFLM takes it, with `auto`/`auto:N` fixed to CPU_AUTO_BATCH_SIZE (at most max_batch_size) when
    the model runs on a CPU (see CPU_AUTO_BATCH_SIZE)."""
    if lm.device.type != "cpu" or not str(batch_size).startswith("auto"):
        return batch_size
    size = max(1, min(CPU_AUTO_BATCH_SIZE, int(max_batch_size or CPU_AUTO_BATCH_SIZE)))
    log.info("batch_size=%s on a CPU: using %d (lm-eval's search for the largest batch that fits takes minutes on "
             "a CPU; pass an integer batch_size to choose)", batch_size, size)
    return size


@register_model("sae_steered")
class SteeredLM(HFLM):
    """HFLM whose generations and log-likelihoods run with `steer(...)` active (and optionally words banned). Its
    thinking segment ends at the model config's think_end (`think_end`, `think_end_id`)."""

    def __init__(self, pretrained="smollm2-135m-instruct", sae=None, features=None, gamma=2.0, mode="add",
                 positions="all", f_max=None, ban=None, ban_scope="thinking", dtype=None, device=None,
                 site="resid_post", vector=None, vector_norm=None, vector_hook=None, **kwargs):
        # Every argument is checked before the model loads: a typo costs a second, not a model load.
        steering, words, config = check_model_args(pretrained, sae, features, gamma, mode, positions, f_max, ban,
                                                   ban_scope, dtype, device, site, vector, vector_norm, vector_hook)
        forcing = forcing_args(kwargs, positions if steering else "all")
        self.lm = pretrained if config is None else load_lm(config)
        kwargs["batch_size"] = cpu_batch_size(kwargs.get("batch_size", 1), kwargs.get("max_batch_size"), self.lm)
        super().__init__(pretrained=self.lm.model, tokenizer=self.lm.tokenizer, **kwargs)
        self.steering = steering
        with self._steered():  # the checks that need the loaded model, now, not at the first request
            pass
        self.banned = banned_sequences(self.tokenizer, words) if words else []
        self.ban_scope = ban_scope
        self.think_end, self.think_end_id = self.lm.config.think_end, think_end_id(self.tokenizer, self.lm.config)
        self.forcer = None if forcing is None else Forcer(forcing, self.tokenizer, self.think_end, eos_ids(
            self.tokenizer, self.lm.config.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)))
        self.forces: list[int] = []  # per generated sample, in generation order: times budget forcing forced it

    def _steered(self):
        if not self.steering:
            return contextlib.nullcontext()
        return (steer_vector if "vector_D" in self.steering else steer)(self.lm, **self.steering)

    def _model_call(self, inps, attn_mask=None, labels=None):
        with self._steered():
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        if self.forcer is not None:
            return self._forced_generate(context, max_length, stop, **generation_kwargs)
        return self._generate(context, max_length, stop, **generation_kwargs)

    def _forced_generate(self, context_BS, max_length, stop, attention_mask=None, **generation_kwargs):
        """Budget forcing (evaluate/budget.py): generate, then generate again from prompt + kept thinking + word for
        the rows that tried to stop thinking early (re-batched, left padded), until none does. Returned as lm-eval
        expects: the context, then each row's generated ids, right-padded."""
        import torch

        mask_BS = torch.ones_like(context_BS) if attention_mask is None else attention_mask
        start, pad, device = context_BS.shape[1], self.tokenizer.pad_token_id, context_BS.device
        budget = max_length - start
        first = self._generate(context_BS, max_length, stop, attention_mask=mask_BS, **generation_kwargs)
        prompts = [row[keep.bool()].tolist() for row, keep in zip(context_BS, mask_BS, strict=True)]

        def generate(rows, prefixes):
            seqs = [prompts[i] + p for i, p in zip(rows, prefixes, strict=True)]
            width = max(map(len, seqs))
            ids_BS = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=device)
            keep_BS = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
            room = max(budget - len(p) for p in prefixes)
            out = self._generate(ids_BS, width + room, stop, attention_mask=keep_BS, min_new_tokens=1,
                                 **generation_kwargs)  # min_new_tokens: s1 asks for min_tokens=1 after the word
            return out[:, width:].tolist()

        outputs, forces = force_rounds(first[:, start:].tolist(), [budget] * len(prompts), self.forcer, generate,
                                       [stop] * len(prompts))
        self.forces += forces
        width = max(map(len, outputs))
        gen_BT = torch.tensor([o + [pad] * (width - len(o)) for o in outputs], dtype=context_BS.dtype,
                              device=device).reshape(len(outputs), width)
        return torch.cat([context_BS, gen_BT], dim=1)

    def _generate(self, context, max_length, stop, **generation_kwargs):
        if self.banned:
            ban = ban_processor(self.banned, context.shape[1], self.tokenizer.eos_token_id, self.think_end_id,
                                self.ban_scope)
            generation_kwargs["logits_processor"] = LogitsProcessorList([ban])
        with self._steered():
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
