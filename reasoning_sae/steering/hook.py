"""Steering a feature (paper Eq. 7 and the released code's clamp) as a rank-1 update of the residual stream.

`add`:   x' = x + gamma * f_max * W_dec[i]                      (paper, Eq. 7)
`clamp`: x' = x + (gamma * f_max - f_i(x)) * W_dec[i]           (released code: set f_i to gamma * f_max in the SAE,
                                                                 keep the SAE error; f_i(x) = ReLU(x . W_enc[:, i] + b_enc[i]))
Only one encoder column, one bias and one decoder row per feature are used: the full SAE never runs.
Positions are absolute (prompt / generated are told apart under the KV cache too)."""

import contextlib
import math
from collections.abc import Sequence

import torch

from reasoning_sae.errors import UserError

MODES = ("add", "clamp")
POSITIONS = ("all", "prompt", "generated")


def _as_list(value, n: int, name: str) -> list[float]:
    values = list(value) if isinstance(value, Sequence) else [value] * n
    if len(values) != n:
        raise UserError(f"{name} has {len(values)} values for {n} features: give one value or one per feature")
    return [float(v) for v in values]


def _f_max(sae, features: list[int], f_max) -> list[float]:
    if f_max is not None:
        return _as_list(f_max, len(features), "f_max")
    stats = getattr(sae, "feature_stats", {}) or {}
    if "max_activation" not in stats:
        raise UserError("no f_max: pass f_max=... (the interpret stage's f_max.json) or use an SAE trained here, "
                        "whose sparsity.safetensors records max_activation")
    return [float(stats["max_activation"][i]) for i in features]


class SteeringVectors:
    """The rank-1 update, engine-independent: the HF hook below and the vLLM hook (reasoning_sae.lm_eval.vllm) share it."""

    def __init__(self, vectors_KD, enc_KD, enc_bias_K, targets_K, b_dec_D, mode: str):
        self.vectors_KD, self.enc_KD, self.enc_bias_K = vectors_KD, enc_KD, enc_bias_K
        self.targets_K, self.b_dec_D, self.mode = targets_K, b_dec_D, mode

    def update(self, resid_XD: torch.Tensor) -> torch.Tensor:
        """What to add to residual-stream rows `resid_XD` ([..., d_model]) to steer every feature."""
        coeff_XK = self.targets_K.expand(*resid_XD.shape[:-1], -1).to(resid_XD.dtype)
        if self.mode == "clamp":
            x = resid_XD if self.b_dec_D is None else resid_XD - self.b_dec_D
            coeff_XK = coeff_XK - torch.relu(x @ self.enc_KD.T + self.enc_bias_K)
        return coeff_XK @ self.vectors_KD


class SteeringHook:
    """The HF forward hook; `prompt_length` is learnt from the first pass over a new sequence."""

    def __init__(self, vectors: SteeringVectors, positions: str):
        self.vectors, self.positions = vectors, positions
        self.prompt_length: int | None = None
        self._last_length = -1

    def _position_mask(self, seq: int, start: int, device) -> torch.Tensor | None:
        if self.positions == "all":
            return None
        # a new sequence starts at absolute position 0, unless this is a cache-less generation step (one longer)
        if start == 0 and seq != self._last_length + 1:
            self.prompt_length = seq
        self._last_length = start + seq
        absolute = torch.arange(start, start + seq, device=device)
        inside = absolute < self.prompt_length
        return (inside if self.positions == "prompt" else ~inside)[None, :, None]

    def __call__(self, _module, _args, kwargs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        cache = kwargs.get("past_key_values")
        seq = hidden.shape[1]
        start = cache.get_seq_length() - seq if cache is not None and kwargs.get("use_cache", True) else 0
        update = self.vectors.update(hidden)
        mask = self._position_mask(seq, start, hidden.device)
        new = hidden + (update if mask is None else update * mask)
        return (new, *output[1:]) if isinstance(output, tuple) else new


def steering_vectors(sae, feature: int | Sequence[int], gamma: float | Sequence[float] = 2.0, mode: str = "add",
                     f_max: float | Sequence[float] | None = None, device=None, dtype=None) -> SteeringVectors:
    """Check the request and gather the SAE rows it needs (one encoder column, bias and decoder row per feature)."""
    features = [feature] if isinstance(feature, int) else [int(f) for f in feature]
    if not features or any(not 0 <= f < sae.d_sae for f in features):
        raise UserError(f"feature index out of range: {features} (the SAE has {sae.d_sae} features, 0-{sae.d_sae - 1})")
    gammas = _as_list(gamma, len(features), "gamma")
    if not all(math.isfinite(g) for g in gammas):
        raise UserError(f"gamma must be finite, got {gammas}")
    if mode not in MODES:
        raise UserError(f"unknown steering mode {mode!r}: use one of {MODES}")
    if mode == "clamp" and sae.cfg.architecture != "standard":
        raise UserError("mode=clamp needs a standard (ReLU) SAE: a topk latent is not a function of its own column")
    targets = [g * m for g, m in zip(gammas, _f_max(sae, features, f_max), strict=True)]
    with torch.no_grad():
        idx = torch.tensor(features)
        return SteeringVectors(
            vectors_KD=sae.W_dec[idx].to(device, dtype), enc_KD=sae.W_enc[:, idx].T.to(device, dtype),
            enc_bias_K=sae.b_enc[idx].to(device, dtype), targets_K=torch.tensor(targets, device=device, dtype=dtype),
            b_dec_D=sae.b_dec.to(device, dtype) if sae.cfg.apply_b_dec_to_input else None, mode=mode)


@contextlib.contextmanager
def steer(lm, sae, feature: int | Sequence[int], gamma: float | Sequence[float] = 2.0, mode: str = "add",
          positions: str = "all", f_max: float | Sequence[float] | None = None):
    """Within the block, every forward pass of `lm` has the features steered at the SAE's hook point.

    `feature` and `gamma`/`f_max` may be lists (one value per feature). f_max defaults to the largest activation
    the SAE saw in training; the evaluation stage passes the interpret stage's value."""
    if positions not in POSITIONS:
        raise UserError(f"unknown steering positions {positions!r}: use one of {POSITIONS}")
    point = lm.hook_point(sae.hook_name(lm))
    if point.kind != "hook_resid_post":
        raise UserError(f"steering reads blocks.L.hook_resid_post, not {point.name}")
    vectors = steering_vectors(sae, feature, gamma, mode, f_max, device=lm.device, dtype=lm.dtype)
    hook = SteeringHook(vectors, positions)
    handle = lm.layers[point.layer].register_forward_hook(hook, with_kwargs=True)
    try:
        yield hook
    finally:
        handle.remove()
