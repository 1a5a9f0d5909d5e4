"""Fig. 6: ReasonScore of every SAE feature, sorted in decreasing order, with the quantile that defines F_R."""

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from reasoning_sae.figures.common import Artifacts, Item, figure_style, save_figure, write_data


def fig6_numbers(art: Artifacts) -> dict:
    """What Fig. 6 states: feature count, |F_R|, the quantile q and threshold tau, score range."""
    scores = art.scores()["reason_score"]
    top = art.top_features()
    return {"n_features": int(len(scores)), "F_R": len(top["features"]), "q": top.get("q"), "top_k": top.get("top_k"),
            "tau": top.get("tau"), "max_score": float(scores.max()), "min_score": float(scores.min()),
            "best_features": [int(f) for f in top["features"][:10]]}


def fig6(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    """Scores by rank (log x), the F_R cut as a vertical line and tau as a horizontal one."""
    figure_style()
    import matplotlib.pyplot as plt

    numbers = fig6_numbers(art)
    ranked = np.sort(art.scores()["reason_score"].to_numpy())[::-1]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(np.arange(1, len(ranked) + 1), ranked, color="#1f77b4", lw=1.2)
    ax.set_xscale("log")
    cut = numbers["F_R"]
    label = f"{numbers['q']} quantile" if numbers["q"] is not None else f"top {numbers['top_k']}"
    if cut:
        ax.axvline(cut, color="tab:red", ls="--", lw=1, label=f"{label}: |F_R| = {cut}")
    if numbers["tau"] is not None:
        ax.axhline(numbers["tau"], color="tab:red", lw=0.6, alpha=0.5)
    ax.axhline(0, color="#999999", lw=0.5)
    ax.set_xlabel("Feature rank")
    ax.set_ylabel("ReasonScore")
    ax.legend(loc="upper right", frameon=False)
    files = save_figure(fig, out, "fig6") + [write_data(out, "fig6", numbers)]
    return Item("fig6", "Fig. 6", "ReasonScore of every SAE feature, sorted in decreasing order", files, ours=numbers)
