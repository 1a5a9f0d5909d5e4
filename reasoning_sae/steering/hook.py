"""Steering a feature (paper Eq. 7 and the released code's clamp) as a rank-1 update of the residual stream.

`add`:   x' = x + gamma * f_max * W_dec[i]                      (paper, Eq. 7)
`clamp`: x' = x + (gamma * f_max - f_i(x)) * W_dec[i]           (released code: set f_i to gamma * f_max in the SAE,
                                                                 keep the SAE error)
         with f_i(x) = relu(pre_i) * [pre_i > threshold_i], pre_i = x . W_enc[:, i] + b_enc[i]: a JumpReLU whose
         threshold is 0 for a standard (ReLU) SAE, the learnt one for jumprelu (and saved batchtopk /
         matryoshka_batchtopk SAEs, which load as jumprelu), the running one for an in-memory batchtopk. A topk latent
         depends on every pre-activation, so clamp refuses it (`SparseAutoencoder.latent_activation`); add works for all.
Only one encoder column, one bias and one decoder row per feature are used: the full SAE never runs.
Positions are absolute (prompt / generated are told apart under the KV cache too).

Site (where f_i(x) is read; the update always lands on the residual stream after layer L):
`resid_post`: x is blocks.L.hook_resid_post, the stream the SAE was trained on (paper v2, DESIGN).
`mlp_out`:    x is layer L's MLP output (HF: the output of `layers[L].mlp`), as the released code did: it hooked
              vLLM's decoder layer `output[0]`, which is the MLP output, not resid_post (lm_eval/sae_utils.py).
              The HF hook keeps that output (a hook on `layers[L].mlp`) and adds the update at the layer's output,
              where the positions are known: the same as adding it to the MLP output, since resid_post = residual +
              MLP output in Llama-family layers (layers that norm the MLP output before adding it, e.g. Gemma 2,
              would differ).
`add` never reads x, so both sites give the same result for it.

A given vector v (DiffMean, or any direction) steers as `add` with one row and nothing read from x:
`x' = x + gamma * norm * v / ||v||` (or `x + gamma * v` without a norm): `vector_steering`, `steer_vector`."""

import contextlib
import math
from collections.abc import Sequence

import torch

from reasoning_sae.errors import UserError
from reasoning_sae.steering.modes import MODES, POSITIONS, SITES


def check_site(site: str, hook_kind: str | None = None) -> None:
    """`site` is one of SITES and fits the SAE's hook kind (when given): mlp_out reuses a resid_post SAE."""
    if site not in SITES:
        raise UserError(f"unknown steering site {site!r}: use one of {SITES}")
    if site == "mlp_out" and hook_kind not in (None, "hook_resid_post"):
        raise UserError(f"steering site mlp_out reads layer L's MLP output with an SAE of blocks.L.hook_resid_post, "
                        f"but this SAE reads blocks.L.{hook_kind}: use site=resid_post or a resid_post SAE")


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

    def __init__(self, vectors_GD, enc_GD, enc_bias_G, targets_G, b_dec_D, mode: str, site: str = "resid_post",
                 threshold_G=None):
        self.vectors_GD, self.enc_GD, self.enc_bias_G = vectors_GD, enc_GD, enc_bias_G
        self.targets_G, self.b_dec_D, self.mode, self.site = targets_G, b_dec_D, mode, site
        # each latent's JumpReLU threshold (clamp); zeros: plain ReLU
        self.threshold_G = torch.zeros_like(targets_G) if threshold_G is None else threshold_G

    def update(self, resid_BSD: torch.Tensor) -> torch.Tensor:
        """What to add to the residual stream to steer every feature, with f_i read from `resid_BSD` (resid_post,
        or the MLP output for site mlp_out; any leading axes work, the last is d_model)."""
        coeff_BSG = self.targets_G.expand(*resid_BSD.shape[:-1], -1).to(resid_BSD.dtype)
        if self.mode == "clamp":
            x = resid_BSD if self.b_dec_D is None else resid_BSD - self.b_dec_D
            pre_BSG = x @ self.enc_GD.T + self.enc_bias_G
            # relu(pre) * [pre > 0] == relu(pre) bit for bit, so a standard SAE (threshold 0) steers as before
            coeff_BSG = coeff_BSG - torch.relu(pre_BSG) * (pre_BSG > self.threshold_G).to(pre_BSG.dtype)
        return coeff_BSG @ self.vectors_GD


class SteeringHook:
    """The HF forward hook; `prompt_length` is learnt from the first pass over a new sequence."""

    def __init__(self, vectors: SteeringVectors, positions: str):
        self.vectors, self.positions = vectors, positions
        self.prompt_length: int | None = None
        self._last_length = -1
        self._mlp_out: torch.Tensor | None = None

    def read_mlp(self, _module, _args, output):
        """Forward hook on layer L's MLP (site mlp_out): keep its output for the layer hook, which runs next."""
        self._mlp_out = output

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
        source = hidden
        if self.vectors.site == "mlp_out":
            source, self._mlp_out = self._mlp_out, None
            if source is None or source.shape != hidden.shape:
                raise RuntimeError("steering site mlp_out: the MLP hook did not run before the layer hook")
        update = self.vectors.update(source)
        mask = self._position_mask(seq, start, hidden.device)
        new = hidden + (update if mask is None else update * mask)
        return (new, *output[1:]) if isinstance(output, tuple) else new


def steering_vectors(sae, feature: int | Sequence[int], gamma: float | Sequence[float] = 2.0, mode: str = "add",
                     f_max: float | Sequence[float] | None = None, device=None, dtype=None,
                     site: str = "resid_post") -> SteeringVectors:
    """Check the request and gather the SAE rows it needs (one encoder column, bias and decoder row per feature)."""
    features = [feature] if isinstance(feature, int) else [int(f) for f in feature]
    if not features or any(not 0 <= f < sae.d_sae for f in features):
        raise UserError(f"feature index out of range: {features} (the SAE has {sae.d_sae} features, 0-{sae.d_sae - 1})")
    gammas = _as_list(gamma, len(features), "gamma")
    if not all(math.isfinite(g) for g in gammas):
        raise UserError(f"gamma must be finite, got {gammas}")
    if mode not in MODES:
        raise UserError(f"unknown steering mode {mode!r}: use one of {MODES}")
    check_site(site)
    idx = torch.tensor(features)
    targets = [g * m for g, m in zip(gammas, _f_max(sae, features, f_max), strict=True)]
    with torch.no_grad():
        threshold_G = sae.latent_thresholds(idx) if mode == "clamp" else torch.zeros(len(idx))
        return SteeringVectors(
            vectors_GD=sae.W_dec[idx].to(device, dtype), enc_GD=sae.W_enc[:, idx].T.to(device, dtype),
            enc_bias_G=sae.b_enc[idx].to(device, dtype), targets_G=torch.tensor(targets, device=device, dtype=dtype),
            b_dec_D=sae.b_dec.to(device, dtype) if sae.cfg.apply_b_dec_to_input else None, mode=mode, site=site,
            threshold_G=threshold_G.to(device, dtype))


def check_clamp(architecture: str) -> None:
    """A UserError unless clamp can read a latent of this architecture (cfg.json's name) from its own pre-activation
    as a JumpReLU: from the name alone, so a stage checks it before any weights or model load."""
    from reasoning_sae.sae import architecture_class
    from reasoning_sae.sae.base import clamp_refused, has_latent_thresholds

    if not has_latent_thresholds(architecture_class(architecture)):
        raise clamp_refused(architecture)


@contextlib.contextmanager
def steer(lm, sae, feature: int | Sequence[int], gamma: float | Sequence[float] = 2.0, mode: str = "add",
          positions: str = "all", f_max: float | Sequence[float] | None = None, site: str = "resid_post"):
    """Within the block, every forward pass of `lm` has the features steered at the SAE's hook point.

    `feature` and `gamma`/`f_max` may be lists (one value per feature). f_max defaults to the largest activation
    the SAE saw in training; the evaluation stage passes the interpret stage's value. `site="mlp_out"` reads f_i
    from layer L's MLP output instead of resid_post (the released code; matters for clamp only)."""
    if positions not in POSITIONS:
        raise UserError(f"unknown steering positions {positions!r}: use one of {POSITIONS}")
    point = lm.hook_point(sae.hook_name(lm))
    check_site(site, point.kind)
    if point.kind != "hook_resid_post":
        raise UserError(f"steering reads blocks.L.hook_resid_post, not {point.name}")
    layer = lm.layers[point.layer]
    mlp = getattr(layer, "mlp", None)
    if site == "mlp_out" and not isinstance(mlp, torch.nn.Module):
        raise UserError(f"steering site mlp_out needs a decoder layer with an `mlp` submodule; "
                        f"{type(layer).__name__} has none: use site=resid_post")
    vectors = steering_vectors(sae, feature, gamma, mode, f_max, device=lm.device, dtype=lm.dtype, site=site)
    with _hooked(layer, vectors, positions) as hook:
        yield hook


@contextlib.contextmanager
def _hooked(layer, vectors: SteeringVectors, positions: str):
    """`vectors` steering decoder layer `layer` (its MLP read too for site mlp_out) within the block."""
    hook = SteeringHook(vectors, positions)
    handles = [layer.register_forward_hook(hook, with_kwargs=True)]
    if vectors.site == "mlp_out":
        handles.append(layer.mlp.register_forward_hook(hook.read_mlp))
    try:
        yield hook
    finally:
        for handle in handles:
            handle.remove()


def update_norm(sae, feature: int | Sequence[int], f_max: float | Sequence[float] | None = None) -> float:
    """||sum_i f_max_i * W_dec[i]||: the norm of the `add` update of a feature set at gamma = 1 (f_max as `steer`
    takes it). A steering vector scaled to this norm times gamma moves the stream as far as the features do."""
    features = [feature] if isinstance(feature, int) else [int(f) for f in feature]
    if not features or any(not 0 <= f < sae.d_sae for f in features):
        raise UserError(f"feature index out of range: {features} (the SAE has {sae.d_sae} features, 0-{sae.d_sae - 1})")
    with torch.no_grad():
        f_max_G = torch.tensor(_f_max(sae, features, f_max), dtype=torch.float64)
        return float((f_max_G @ sae.W_dec[torch.tensor(features)].double()).norm())


def vector_steering(vector_D, gamma: float = 1.0, norm: float | None = None, device=None, dtype=None,
                    site: str = "resid_post") -> SteeringVectors:
    """A given direction as the rank-1 update (`add`, one row, nothing read from x): x + gamma * norm * v / ||v||,
    or x + gamma * v when `norm` is None. The HF hook and the vLLM slot take it as they take features."""
    vector_D = torch.as_tensor(vector_D).detach().double()
    if vector_D.ndim != 1 or not len(vector_D):
        raise UserError(f"a steering vector is one row of d_model numbers, got shape {tuple(vector_D.shape)}")
    if not torch.isfinite(vector_D).all():
        raise UserError("the steering vector has NaN or infinite entries: recompute it (a DiffMean vector: rerun the "
                        "score stage with force=true)")
    if not math.isfinite(gamma) or (norm is not None and not (math.isfinite(norm) and norm >= 0)):
        raise UserError(f"gamma={gamma} and vector norm={norm} must be finite (the norm >= 0)")
    check_site(site)
    length = float(vector_D.norm())
    if norm is not None and length == 0:
        raise UserError("the steering vector is zero: it has no direction to scale to a norm")
    row_D, target = (vector_D / length, gamma * norm) if norm is not None else (vector_D, gamma)
    dtype = dtype or torch.float32  # the SAE's rows are float32 too
    zeros = {"device": device, "dtype": dtype}
    return SteeringVectors(vectors_GD=row_D[None].to(device, dtype), enc_GD=torch.zeros(1, len(row_D), **zeros),
                           enc_bias_G=torch.zeros(1, **zeros), targets_G=torch.tensor([target], **zeros),
                           b_dec_D=None, mode="add", site=site)


@contextlib.contextmanager
def steer_vector(lm, vector_D, hook: str, gamma: float = 1.0, norm: float | None = None, positions: str = "all"):
    """Within the block, every forward pass of `lm` adds gamma * norm * v / ||v|| (gamma * v without a norm) at
    `hook` (blocks.L.hook_resid_post), at the positions asked for: the same hook as `steer`'s features."""
    if positions not in POSITIONS:
        raise UserError(f"unknown steering positions {positions!r}: use one of {POSITIONS}")
    point = lm.hook_point(hook)
    if point.kind != "hook_resid_post":
        raise UserError(f"steering reads blocks.L.hook_resid_post, not {point.name}")
    if torch.as_tensor(vector_D).shape != (lm.d_model,):
        raise UserError(f"the steering vector has shape {tuple(torch.as_tensor(vector_D).shape)} but the model's "
                        f"residual stream has {lm.d_model} dimensions: use a vector computed on this model")
    vectors = vector_steering(vector_D, gamma, norm, device=lm.device, dtype=lm.dtype)
    with _hooked(lm.layers[point.layer], vectors, positions) as steering_hook:
        yield steering_hook
