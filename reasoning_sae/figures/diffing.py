"""Fig. 4 (features present at each stage of model diffing) and Table 3 (cross-layer matching), from `diff`."""

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.figures.common import (Artifacts, Item, figure_style, fmt, not_run, save_figure, write_data,
                                          write_table)

DIFF_MISSING = "the optional diff stage has not run (python -m reasoning_sae diff)"
CLASSES = ("diff", "maybe", "same")
FIG4_COLUMNS = ["trajectory", "fr_present", "fr_total", "fr_share", "set_present", "set_total", "set_share"]


def fig4(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    """Grouped bars: % of F_R and of the chosen (or random) set present in each trajectory's SAE."""
    title = "Share of F_R features present at each stage of the diffing pipeline"
    if not art.has("diff", "presence.csv"):
        return not_run("fig4", "Fig. 4", title, DIFF_MISSING)
    figure_style()
    import matplotlib.pyplot as plt

    presence = art.csv("diff", "presence.csv")
    summary = art.json("diff", "summary.json") if art.has("diff", "summary.json") else {}
    set_name = summary.get("main", {}).get("set", "chosen set")
    threshold = summary.get("threshold", 0.7)
    x = np.arange(len(presence))
    fig, ax = plt.subplots(figsize=(max(3.5, 1.1 * len(presence) + 1.5), 3))
    for offset, column, label, color in ((-0.2, "fr", "F_R", "#1f77b4"), (0.2, "set", set_name, "#ff7f0e")):
        shares = 100 * presence[f"{column}_share"].astype(float)
        total = int(presence[f"{column}_total"].iloc[0]) if len(presence) else 0
        bars = ax.bar(x + offset, shares, width=0.4, color=color, label=f"{label} ({total} features)")
        ax.bar_label(bars, fmt="%.0f", fontsize=6)
    ax.set_xticks(x, presence["trajectory"].astype(str).str.replace("->", "→"))
    ax.set_ylabel(f"% of features present (cos ≥ {threshold})")
    ax.set_ylim(0, 105)
    ax.legend(frameon=False, fontsize=7)
    files = save_figure(fig, out, "fig4") + [write_data(out, "fig4", presence[FIG4_COLUMNS].to_dict("records"))]
    ours = {r.trajectory: {"f_r_pct": round(100 * r.fr_share, 1), f"{set_name}_pct": round(100 * r.set_share, 1)}
            for r in presence.itertuples()}
    return Item("fig4", "Fig. 4", title, files, ours=ours, notes=list(summary.get("left_out", [])))


def table3_frame(counts: pd.DataFrame) -> pd.DataFrame:
    """Per layer: % diff / maybe / same of the reasoning and of the random features (the paper's columns)."""
    rows = []
    for layer, group in counts.groupby("layer", sort=True):
        by_set = group.set_index("set")
        row = {"Layer": str(layer)}
        for name, title in (("reasoning", "Reasoning"), ("random", "Random")):
            for cls in CLASSES:
                value = 100 * float(by_set.loc[name, f"share_{cls}"]) if name in by_set.index else None
                row[f"{title} {cls}"] = fmt(value)
        rows.append(row)
    return pd.DataFrame(rows, columns=["Layer", *(f"{t} {c}" for t in ("Reasoning", "Random") for c in CLASSES)])


def table3(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    """Cross-layer matching shares per layer, in %."""
    title = "Cross-layer matching of reasoning and random features (%)"
    if not art.has("diff", "crosslayer.csv"):
        return not_run("table3", "Table 3", title, DIFF_MISSING)
    counts = art.csv("diff", "crosslayer.csv")
    if counts.empty:
        return not_run("table3", "Table 3", title, "the diff stage matched no layers (diff.crosslayer.layers is empty)")
    frame = table3_frame(counts)
    source = counts["layer_from"].iloc[0]
    n = counts.groupby("set")["n"].first().to_dict()
    files, table = write_table(frame, out, "table3", f"Cross-layer matching from layer {source} (%)",
                               note=f"{n.get('reasoning', 0)} reasoning features (F_R), {n.get('random', 0)} random "
                                    f"features; classes by the activation matching score.")
    ours = {"layers": frame["Layer"].tolist(), "from_layer": int(source), "n": n}
    summary = art.json("diff", "summary.json") if art.has("diff", "summary.json") else {}
    notes = [contrast(counts)] + [note for note in summary.get("left_out", []) if "full-scale" in note]
    return Item("table3", "Table 3", title, files, ours=ours, markdown=table, notes=notes)


def contrast(counts: pd.DataFrame) -> str:
    """What the table shows across layers: the range of `same` for the reasoning and for the random features."""
    same = {name: sorted(100 * group["share_same"]) for name, group in counts.groupby("set")}
    ranges = {name: f"{v[0]:.0f}-{v[-1]:.0f}%" if len(v) > 1 else f"{v[0]:.0f}%" for name, v in same.items()}
    return (f"same at the other layers: reasoning features {ranges.get('reasoning', '–')}, random features "
            f"{ranges.get('random', '–')}; how far each cell moves between reruns (seeds, CPU kernels) is its "
            f"tolerance in paper/expected/<experiment>/table3.yaml where the run is committed")
