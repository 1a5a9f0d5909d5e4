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
  ban          words to ban while thinking (Table 2): `+`-joined surface forms or a vocabulary .json file
  ban_scope    thinking | all
Everything else goes to lm-eval's HFLM (batch_size, max_length, ...)."""

import contextlib
import json
import math
from pathlib import Path

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from transformers import LogitsProcessorList

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.metrics import THINK_END
from reasoning_sae.evaluate.wordban import banned_sequences, ban_processor
from reasoning_sae.models import load_lm
from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.steering import check_site, steer
from reasoning_sae.vocab.vocabulary import load_vocabulary


def split_list(value, cast=str) -> list:
    """A model-arg list: a scalar, a `+`-joined string, or already a list."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split("+")
    try:
        return [cast(v) for v in items]
    except ValueError as err:
        raise UserError(f"cannot read {value!r} as a list of {cast.__name__}: join values with '+'") from err


def read_f_max(value, features: list[int]) -> list[float] | None:
    """f_max per feature from a number, a `+` list, or an interpret-stage f_max.json ({feature id: value})."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.endswith(".json"):
        table = json.loads(Path(value).expanduser().read_text())
        missing = [f for f in features if str(f) not in table]
        if missing:
            raise UserError(f"{value} has no f_max for features {missing}: add them to interpret.extra_features "
                            f"and rerun the interpret stage, or pass f_max=<number>")
        return [float(table[str(f)]) for f in features]
    return split_list(value, float)


def read_ban(value) -> list[str]:
    """Surface forms to ban: a vocabulary .json file or `+`-joined strings."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return load_vocabulary(value) if str(value).endswith(".json") else str(value).split("+")


def steering_spec(sae, features, gamma, mode, positions, f_max, site="resid_post") -> dict | None:
    """The steering model args as `steer(...)` keywords (None: no SAE, no steering), shared by both engines."""
    check_site(site)
    features = split_list(features, int)
    if sae is None and features:
        raise UserError("features given without an SAE: add sae=<SAE directory> to the model args")
    if sae is None:
        return None
    if not features:
        raise UserError("sae given without features: add features=<id>[+<id>...] to the model args")
    loaded = sae if isinstance(sae, SparseAutoencoder) else SparseAutoencoder.load(Path(sae).expanduser())
    gammas = split_list(gamma, float)
    if not all(math.isfinite(g) for g in gammas):
        raise UserError(f"gamma must be finite, got {gammas}")
    return {"sae": loaded, "feature": features, "gamma": gammas if len(gammas) > 1 else gammas[0],
            "mode": mode, "positions": positions, "f_max": read_f_max(f_max, features), "site": site}


def think_end_id(tokenizer) -> int | None:
    """The id of `</think>` when it is one token of this tokenizer, else None (a ban then lasts the whole output)."""
    ids = tokenizer.convert_tokens_to_ids(THINK_END)
    return ids if isinstance(ids, int) and ids != tokenizer.unk_token_id else None


@register_model("sae_steered")
class SteeredLM(HFLM):
    """HFLM whose generations and log-likelihoods run with `steer(...)` active (and optionally words banned)."""

    def __init__(self, pretrained="smollm2-135m-instruct", sae=None, features=None, gamma=2.0, mode="add",
                 positions="all", f_max=None, ban=None, ban_scope="thinking", dtype=None, device=None,
                 site="resid_post", **kwargs):
        overrides = {k: v for k, v in (("dtype", dtype), ("device", device)) if v not in (None, "auto")}
        self.lm = pretrained if hasattr(pretrained, "activations") else load_lm(str(pretrained), **overrides)
        super().__init__(pretrained=self.lm.model, tokenizer=self.lm.tokenizer, **kwargs)
        self.steering = self._steering(sae, features, gamma, mode, positions, f_max, site)
        self.banned = banned_sequences(self.tokenizer, read_ban(ban)) if ban else []
        self.ban_scope = ban_scope
        self.think_end_id = think_end_id(self.tokenizer)

    def _steering(self, sae, features, gamma, mode, positions, f_max, site) -> dict | None:
        spec = steering_spec(sae, features, gamma, mode, positions, f_max, site)
        if spec is None:
            return None
        with steer(self.lm, **spec):  # validates everything now, not at the first request
            pass
        return spec

    def _steered(self):
        return steer(self.lm, **self.steering) if self.steering else contextlib.nullcontext()

    def _model_call(self, inps, attn_mask=None, labels=None):
        with self._steered():
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        if self.banned:
            ban = ban_processor(self.banned, context.shape[1], self.tokenizer.eos_token_id, self.think_end_id,
                                self.ban_scope)
            generation_kwargs["logits_processor"] = LogitsProcessorList([ban])
        with self._steered():
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
