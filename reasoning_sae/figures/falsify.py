"""Beyond 1: token-injection falsification of F_R (the falsify stage, after Ma et al. 2026, arXiv 2601.05679): each
feature's mean activation around its trigger tokens inserted into chat text against its mean in reasoning windows,
coloured by verdict, F_R beside random control features; and the share of token detectors in each group."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.falsify.verdict import CONTEXT_DEPENDENT, TOKEN_DETECTOR, TOKEN_SENSITIVE, UNTESTED, VERDICTS
from reasoning_sae.figures.common import (Artifacts, Item, figure_style, fmt, markdown, not_run, save_figure,
                                          write_data)

KEY, LABEL, TITLE = "falsify", "Beyond 1", "Token-injection falsification of F_R"
MISSING = "the falsify stage has not run (python -m reasoning_sae falsify)"
COLORS = {TOKEN_DETECTOR: "tab:red", TOKEN_SENSITIVE: "tab:orange", CONTEXT_DEPENDENT: "tab:blue",
          UNTESTED: "#aaaaaa"}
MARKERS = {"F_R": "o", "random": "^"}
SOURCE = ("Ma et al. 2026 (arXiv 2601.05679), `run_injection_experiment` in reasoning-probing's "
          "scripts/run_token_injection_experiment.py")


def group_numbers(frame: pd.DataFrame) -> dict[str, dict]:
    """Per group: features, tested, each verdict's count, the share of token detectors among the tested, and the mean
    drop of the activation around triggers in reasoning text when their context is ablated."""
    numbers = {}
    for group in [g for g in MARKERS if g in set(frame["group"])] + sorted(set(frame["group"]) - set(MARKERS)):
        rows = frame[frame["group"] == group]
        counts = {v: int((rows["verdict"] == v).sum()) for v in VERDICTS}
        tested = len(rows) - counts[UNTESTED]
        ablated = rows[rows["ablated_sites"] > 0]
        context, after = ablated["context_mean"].mean(), ablated["ablated_mean"].mean()
        numbers[group] = {"features": len(rows), "tested": tested, **counts,
                          "detector_share": counts[TOKEN_DETECTOR] / tested if tested else math.nan,
                          "ablation_drop": float(1 - after / context) if len(ablated) and context > 0 else math.nan}
    return numbers


def _axis(values: pd.Series) -> np.ndarray:
    return values.astype(float).fillna(0).clip(lower=0).to_numpy()


def falsification(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    """The scatter (log-log with a linear stretch at 0: reasoning vs injected mean activation; y = share * x is the
    detector line), and the shares of F_R and of the random features as a Markdown table."""
    if not art.has("falsify", "falsify.csv"):
        return not_run(KEY, LABEL, TITLE, MISSING)
    figure_style()
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    frame = art.csv("falsify", "falsify.csv")
    summary = art.meta("falsify").get("summary", {})
    share = float(art.config("falsify").get("falsify", {}).get("share", 0.5))
    numbers = group_numbers(frame)
    x, y = _axis(frame["reasoning_mean"]), _axis(frame["injected_mean"])
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for group, marker in MARKERS.items():
        for verdict, color in COLORS.items():
            rows = (frame["group"] == group).to_numpy() & (frame["verdict"] == verdict).to_numpy()
            if rows.any():
                ax.scatter(x[rows], y[rows], s=16 if group == "F_R" else 12, marker=marker, color=color,
                           edgecolors="black" if group == "F_R" else "none", linewidths=0.4, alpha=0.85)
    positive = np.concatenate([x[x > 0], y[y > 0]])
    low = float(positive.min()) if len(positive) else 1e-3
    high = float(max(positive.max(), low * 10)) if len(positive) else 1.0
    ax.set_xscale("symlog", linthresh=low)
    ax.set_yscale("symlog", linthresh=low)
    line = np.geomspace(low, high, 50)
    ax.plot(line, line, color="#777777", lw=0.6, ls=":")
    if share > 0:
        ax.plot(line[share * line >= low], share * line[share * line >= low], color="tab:red", lw=0.8, ls="--")
    ax.set_xlabel("mean activation in reasoning windows")
    ax.set_ylabel("mean activation around injected triggers")
    handles = [Line2D([], [], ls="", marker="s", color=c, label=v.replace("_", " ")) for v, c in COLORS.items()
               if (frame["verdict"] == v).any()]
    handles += [Line2D([], [], ls="", marker=m, color="#555555", label=f"{g} ({numbers.get(g, {}).get('features', 0)})")
                for g, m in MARKERS.items()]
    handles.append(Line2D([], [], color="tab:red", ls="--", lw=0.8, label=f"injected = {share:g} x reasoning"))
    ax.legend(handles=handles, frameon=False, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    files = save_figure(fig, out, KEY) + [write_data(out, KEY, {"groups": numbers, "features": frame[
        ["feature", "group", "reasoning_mean", "injected_mean", "verdict"]].to_dict("records")})]

    table = pd.DataFrame([{"group": group, "features": fmt(n["features"]), "tested": fmt(n["tested"]),
                           "token detectors": f"{n[TOKEN_DETECTOR]} ({fmt(100 * n['detector_share'], 0)}%)",
                           "token-sensitive": fmt(n[TOKEN_SENSITIVE]),
                           "context-dependent": fmt(n[CONTEXT_DEPENDENT]),
                           "ablation drop": f"{fmt(100 * n['ablation_drop'], 0)}%"} for group, n in numbers.items()])
    f_r, rand = numbers.get("F_R", {}), numbers.get("random", {})
    f_r_share, rand_share = (fmt(100 * n.get("detector_share", math.nan), 0) for n in (f_r, rand))
    text = (f"Of the {f_r.get('tested', 0)} tested features of F_R, {f_r_share}% are token detectors; of "
            f"{rand.get('tested', 0)} random features, {rand_share}%. Ma et al. report 45-90% of contrastively "
            f"selected reasoning features activating on injected tokens across 20 configurations.")
    rule = summary.get("rule") or "token_detector: Cohen's d >= 0.8 at p < 0.01 and injected >= share x reasoning"
    notes = [f"Rule: {rule}; source: {SOURCE}. Token-sensitive: d >= 0.2 at p < 0.05 (their weakly token-driven "
             f"class and above) but not a token detector.",
             "Ablation drop: how much the activation around a trigger in reasoning text falls when the "
             f"{art.config('falsify').get('falsify', {}).get('ablation', '?')} tokens before it and the window after "
             "it are replaced by neutral chat text of the same length."]
    ours = {"F_R detector share": f_r.get("detector_share", math.nan),
            "random detector share": rand.get("detector_share", math.nan),
            "F_R tested": f_r.get("tested", 0), "random tested": rand.get("tested", 0)}
    return Item(KEY, LABEL, TITLE, files, ours=ours, notes=notes, markdown=f"{text}\n\n{markdown(table)}")
