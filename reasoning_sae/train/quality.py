"""End-of-training SAE quality on held-out corpus sequences: reconstruction (MSE, explained variance, L0) and the
downstream cost of splicing the SAE into the LM (CE loss, KL to the clean model, loss recovered against
zero-ablation), plus the feature-density histogram."""

import contextlib
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reasoning_sae.models import LanguageModel, resid_post
from reasoning_sae.sae import SparseAutoencoder


@contextlib.contextmanager
def replace_resid_post(lm: LanguageModel, layer: int, fn, keep_BS: torch.Tensor | None = None):
    """Replace the residual stream after `layer` by fn(resid) (only where keep_BS is True, when given)."""

    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        new = fn(hidden).to(hidden.dtype)
        if keep_BS is not None:
            new = torch.where(keep_BS[..., None], new, hidden)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = lm.layers[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def exact_sum(values: torch.Tensor) -> float:
    """The correctly rounded sum (math.fsum) of per-position values: a torch .sum() over all of them splits the work
    by thread count, so its last bits would change with the number of threads (rows reduce in one thread each)."""
    return math.fsum(values.double().flatten().tolist())


def explained_variance_per_token(x_ND: torch.Tensor, recon_ND: torch.Tensor) -> torch.Tensor:
    """The mean over tokens of each token's explained variance, 1 - |x - x_hat|^2 / |x - mean_batch(x)|^2 (SAELens'
    training metric, logged during training): a 0-dim tensor."""
    resid_N = (x_ND - recon_ND).pow(2).sum(-1)
    total_N = (x_ND - x_ND.mean(0)).pow(2).sum(-1)
    return (1 - resid_N / total_N.clamp(min=1e-12)).mean()


def explained_variance_pooled(sq_err: float, total_var: float) -> float:
    """The share of the total variance explained, 1 - sum |x - x_hat|^2 / sum |x - mean(x)|^2, the sums taken over
    every token and dimension (SAELens' evaluation kind: dominated by the dimensions of largest variance)."""
    return 1 - sq_err / total_var


def explained_variance_per_dim(sq_err_D: torch.Tensor, var_D: torch.Tensor) -> float:
    """The mean over dimensions of each one's explained variance, 1 - sum_n err_nd^2 / sum_n (x_nd - mean_d)^2:
    not dominated by a few massive dimensions (in SmolLM2's layer 18 one dimension carries ~97% of the variance)."""
    return (1 - sq_err_D / var_D.clamp(min=1e-12)).mean().item()


def _ce_and_logprobs(lm: LanguageModel, ids_BS: torch.Tensor):
    logits = lm.model(ids_BS, use_cache=False).logits[:, :-1].float()
    logprobs = F.log_softmax(logits, dim=-1)
    ce = -logprobs.gather(-1, ids_BS[:, 1:, None]).squeeze(-1)
    return ce, logprobs


@torch.inference_mode()
def sae_quality(lm: LanguageModel, sae: SparseAutoencoder, token_ids: np.ndarray, layer: int, ignore_token_ids,
                batch_sequences: int = 4, sink_positions: int = 0) -> dict[str, float]:
    """The SAE is read and spliced in only where it was trained: not at special tokens or sink positions."""
    sae = sae.to(lm.device)
    sums = {"ce_clean": 0.0, "ce_sae": 0.0, "ce_zero": 0.0, "kl_sae": 0.0, "kl_zero": 0.0, "n_pred": 0,
            "sq_err": 0.0, "var": 0.0, "l0": 0.0, "n_tok": 0}
    acts, sq_err_D = [], None
    for batch in lm.iter_activations(token_ids, resid_post(layer), batch_sequences, ignore_token_ids, sink_positions):
        ids_BS, keep_BS = batch.ids_BS, batch.keep_BS
        x_ND = batch.acts[keep_BS].float()
        feats_NF = sae.encode(x_ND)
        sq_err_ND = (sae.decode(feats_NF) - x_ND).pow(2)
        sums["sq_err"] += exact_sum(sq_err_ND.sum(-1))
        sq_err_D = sq_err_ND.sum(0) if sq_err_D is None else sq_err_D + sq_err_ND.sum(0)
        sums["l0"] += (feats_NF > 0).sum().item()
        sums["n_tok"] += len(x_ND)
        acts.append(x_ND)
        ce_clean, lp_clean = _ce_and_logprobs(lm, ids_BS)
        with replace_resid_post(lm, layer, lambda h: sae(h.float()), keep_BS):
            ce_sae, lp_sae = _ce_and_logprobs(lm, ids_BS)
        with replace_resid_post(lm, layer, torch.zeros_like, keep_BS):
            ce_zero, lp_zero = _ce_and_logprobs(lm, ids_BS)
        sums["ce_clean"] += exact_sum(ce_clean)
        sums["ce_sae"] += exact_sum(ce_sae)
        sums["ce_zero"] += exact_sum(ce_zero)
        sums["kl_sae"] += exact_sum((lp_clean.exp() * (lp_clean - lp_sae)).sum(-1))
        sums["kl_zero"] += exact_sum((lp_clean.exp() * (lp_clean - lp_zero)).sum(-1))
        sums["n_pred"] += ce_clean.numel()
    all_ND = torch.cat(acts)
    var_D = (all_ND - all_ND.mean(0)).pow(2).sum(0)
    total_var = var_D.sum().item()
    n, t = sums["n_pred"], sums["n_tok"]
    ce_clean, ce_sae, ce_zero = sums["ce_clean"] / n, sums["ce_sae"] / n, sums["ce_zero"] / n
    return {
        "metrics/l0": sums["l0"] / t,
        "metrics/explained_variance": explained_variance_pooled(sums["sq_err"], total_var),
        "metrics/explained_variance_per_dim": explained_variance_per_dim(sq_err_D, var_D),
        "metrics/top_dim_variance_share": (var_D.max() / var_D.sum()).item(),
        "metrics/mse": sums["sq_err"] / t,
        "metrics/ce_loss_without_sae": ce_clean,
        "metrics/ce_loss_with_sae": ce_sae,
        "metrics/ce_loss_with_ablation": ce_zero,
        "metrics/ce_loss_score": (ce_zero - ce_sae) / (ce_zero - ce_clean) if ce_zero != ce_clean else float("nan"),
        "metrics/kl_div_with_sae": sums["kl_sae"] / n,
        "metrics/kl_div_with_ablation": sums["kl_zero"] / n,
        # SAELens' kl_div_score: the share of the zero-ablation's KL to the clean model that the SAE recovers
        "metrics/kl_div_score": 1 - sums["kl_sae"] / sums["kl_zero"] if sums["kl_zero"] else float("nan"),
        "eval/tokens": t,
    }


def density_histogram(log10_density_F: torch.Tensor, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(log10_density_F.numpy(), bins=60, color="#3b6ea8")
    ax.set_xlabel("log10 feature density (fraction of training tokens a latent fires on)")
    ax.set_ylabel("latents")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
