"""Figs. 3a, 8 and 9: feature interfaces (Bricken et al. 2023 style) for features of F_R, from the interpret stage.

Each feature is one row: its top-activating contexts with every token shaded by its activation (as a fraction of
f_max) and the maximum token in bold, the top and bottom logit effects of its decoder direction, and the histogram
of its non-zero activations."""

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from reasoning_sae.errors import UserError
from reasoning_sae.figures.common import Artifacts, Item, figure_style, not_run, save_figure, write_data

PANELS = {"fig3a": ("Fig. 3a", "Top-activating examples of features of F_R"),
          "fig8a": ("Fig. 8a", "Feature interfaces (more features of F_R)"),
          "fig8b": ("Fig. 8b", "Feature interfaces (more features of F_R)"),
          "fig9a": ("Fig. 9a", "Feature interfaces (more features of F_R)"),
          "fig9b": ("Fig. 9b", "Feature interfaces (more features of F_R)")}
VISIBLE = {"\n": "↵", "\r": "␍", "\t": "⇥"}
CHAR_WIDTH = 0.602     # advance of DejaVu Sans Mono, in font sizes
FONT = 6.5
SHADE = (1.0, 0.42, 0.0)


def visible(token: str) -> str:
    for raw, shown in VISIBLE.items():
        token = token.replace(raw, shown)
    return token


def panel_features(art: Artifacts, opts: DictConfig, records: dict) -> dict[str, list[int]]:
    """Feature ids per panel: those the config names, the rest filled with the best unused features of F_R."""
    per_panel = int(opts.features_per_panel)
    chosen = {key: [int(f) for f in (opts.interfaces or {}).get(key) or []] for key in PANELS}
    missing = sorted({f for ids in chosen.values() for f in ids if str(f) not in records})
    if missing:
        raise UserError(f"figures.interfaces names features {missing} that the interpret stage has no record of: "
                        f"add them to interpret.extra_features and rerun the interpret stage")
    used = {f for ids in chosen.values() for f in ids}
    pool = [f for f in art.f_r() if str(f) in records and f not in used]
    for key, ids in chosen.items():
        if not ids:
            chosen[key], pool = pool[:per_panel], pool[per_panel:]
    return chosen


def clip(tokens: list[str], focus: int, budget: int) -> tuple[int, int]:
    """The token range around `focus` whose text fits `budget` characters, about 3/4 of it before `focus`."""
    lo, hi, used = focus, focus + 1, len(visible(tokens[focus]))
    while lo > 0 and used + len(visible(tokens[lo - 1])) <= 0.75 * budget:
        lo, used = lo - 1, used + len(visible(tokens[lo - 1]))
    while hi < len(tokens) and used + len(visible(tokens[hi])) <= budget:
        hi, used = hi + 1, used + len(visible(tokens[hi]))
    while lo > 0 and used + len(visible(tokens[lo - 1])) <= budget:
        lo, used = lo - 1, used + len(visible(tokens[lo - 1]))
    return lo, hi


def draw_contexts(ax, record: dict, contexts: list[dict] | None, n: int, budget: int) -> None:
    """One line per context: token backgrounds shaded by activation / f_max, the max token bold."""
    from matplotlib.patches import Rectangle

    f_max = record["f_max"] or 1.0
    shown = (contexts if contexts is not None else record["top_contexts"])[:n]
    ax.set_xlim(0, budget + 8)
    ax.set_ylim(max(len(shown), 1), 0)
    ax.axis("off")
    for row, context in enumerate(shown):
        y = row + 0.5
        ax.text(budget + 1, y, f"{context['activation']:.2f}", va="center", fontsize=FONT - 1, color="#555555")
        if contexts is None:  # text only: shade the whole line
            text = visible(context["text"])[-budget:]
            alpha = min(max(0.3 * context["activation"] / f_max, 0.0), 1.0)
            ax.add_patch(Rectangle((0, row + 0.1), len(text), 0.8, color=SHADE, alpha=alpha, lw=0))
            ax.text(0, y, text, va="center", family="monospace", fontsize=FONT)
            continue
        tokens, acts, best = context["tokens"], context["acts"], context["max_index"]
        lo, hi = clip(tokens, best, budget)
        x, pieces = 0, {"before": "", "max": "", "after": ""}
        for i in range(lo, hi):
            text = visible(tokens[i])
            alpha = min(max(acts[i] / f_max, 0.0), 1.0) if acts[i] == acts[i] else 0.0
            if alpha > 0:
                ax.add_patch(Rectangle((x, row + 0.1), len(text), 0.8, color=SHADE, alpha=alpha, lw=0))
            pieces["before" if i < best else "max" if i == best else "after"] += text
            x += len(text)
        before = len(pieces["before"])
        ax.text(0, y, pieces["before"], va="center", family="monospace", fontsize=FONT)
        ax.text(before, y, pieces["max"], va="center", family="monospace", fontsize=FONT, weight="bold")
        ax.text(before + len(pieces["max"]), y, pieces["after"], va="center", family="monospace", fontsize=FONT)


def draw_logits(ax, record: dict) -> None:
    """Top (blue) and bottom (red) logit effects of the feature's decoder direction."""
    logits = record.get("logits") or {}
    rows = list(logits.get("top", [])) + list(reversed(logits.get("bottom", [])))
    if not rows:
        ax.axis("off")
        return
    y = np.arange(len(rows))
    values = [r["value"] for r in rows]
    ax.barh(y, values, color=["#1f77b4" if v >= 0 else "#d62728" for v in values])
    ax.set_yticks(y, [repr(visible(r["token"]))[1:-1] or "␣" for r in rows], fontsize=4.5, family="monospace")
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.tick_params(axis="x", labelsize=5)
    ax.set_title("logit effects", fontsize=6)


def draw_density(ax, record: dict) -> None:
    """Histogram of the feature's non-zero activations (log-spaced bins)."""
    hist = record.get("histogram") or {}
    edges, counts = np.asarray(hist.get("edges", [])), np.asarray(hist.get("counts", []))
    ax.set_title(f"density {100 * record.get('density', 0.0):.3g}% of tokens", fontsize=6)
    ax.tick_params(labelsize=5)
    if len(counts) == 0 or len(edges) != len(counts) + 1:
        return
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#e8710a")
    ax.set_xscale("log")
    ax.set_xlabel("activation", fontsize=5)


def header(feature: int, record: dict) -> str:
    score = record.get("score") or {}
    rank = f", rank {score['rank']}" if "rank" in score else ""
    reason = f"ReasonScore {score['reason_score']:.3g}{rank}" if "reason_score" in score else "not scored"
    return f"#{feature}   f_max {record['f_max']:.3g}   {reason}"


def draw_panel(records: dict, contexts: dict | None, features: list[int], opts: DictConfig):
    """A figure with one row per feature: contexts | logit effects | density."""
    import matplotlib.pyplot as plt

    n = int(opts.contexts)
    width, heights = 11.0, [max(0.22 * n + 0.45, 1.9) for _ in features]
    fig = plt.figure(figsize=(width, sum(heights)))
    grid = fig.add_gridspec(len(features), 3, width_ratios=[6.2, 1.4, 1.6], height_ratios=heights,
                            left=0.01, right=0.99, top=0.97, bottom=0.03, wspace=0.35, hspace=0.55)
    text_width = width * grid.get_width_ratios()[0] / sum(grid.get_width_ratios()) * 0.98
    budget = min(int(opts.context_chars), int(text_width * 72 / (CHAR_WIDTH * FONT)) - 9)
    for row, feature in enumerate(features):
        record = records[str(feature)]
        ax = fig.add_subplot(grid[row, 0])
        draw_contexts(ax, record, None if contexts is None else contexts.get(str(feature), []), n, budget)
        ax.set_title(header(feature, record), loc="left", fontsize=7, weight="bold")
        draw_logits(fig.add_subplot(grid[row, 1]), record)
        draw_density(fig.add_subplot(grid[row, 2]), record)
    return fig


def interfaces(art: Artifacts, out: Path, opts: DictConfig) -> list[Item]:
    """Figs. 3a, 8a/b, 9a/b: one figure per panel of `features_per_panel` features."""
    figure_style()
    records = art.json("interpret", "features.json")
    contexts = art.json("interpret", "contexts.json") if art.has("interpret", "contexts.json") else None
    note = [] if contexts is not None else [
        "the interpret artifact has no contexts.json (made before per-token contexts were saved): whole contexts are "
        "shaded; rerun `python -m reasoning_sae interpret force=true` for token-level highlighting"]
    items = []
    for key, features in panel_features(art, opts, records).items():
        label, title = PANELS[key]
        if not features:
            items.append(not_run(key, label, title, "F_R has no further features with an interpret record "
                                                    "(raise score.q's share or set score.top_k)"))
            continue
        files = save_figure(draw_panel(records, contexts, features, opts), out, key, tight=False)
        data = {str(f): {"f_max": records[str(f)]["f_max"], "density": records[str(f)]["density"],
                         "top_activations": [c["activation"] for c in records[str(f)]["top_contexts"]
                                             [: int(opts.contexts)]]} for f in features}
        files.append(write_data(out, key, data))
        ours = {"features": features, "f_max": {str(f): round(records[str(f)]["f_max"], 4) for f in features}}
        items.append(Item(key, label, title, files, ours=ours, notes=list(note)))
    return items
