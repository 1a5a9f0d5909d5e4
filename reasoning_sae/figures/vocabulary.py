"""Fig. 2 (word-frequency shift between reasoning traces and solutions) and Fig. 5 (the vocabulary R)."""

import json
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.figures.common import Artifacts, Item, figure_style, save_figure, write_data, write_table

FIG2_COLUMNS = ["rank", "word", "diff", "p_think", "p_solution", "general_frequency", "filtered"]


class Fig2Style(NamedTuple):
    """Sizes and labels of a Fig. 2 drawing (the vocab stage's preview and the paper figure differ only in these)."""

    width: float
    min_height: float
    row_height: float
    pad_height: float
    fontsize: float
    dot_size: float
    line_width: float
    bar_label: str
    frequency_label: str


PAPER_FIG2 = Fig2Style(6, 2.5, 0.16, 1.0, 6, 10, 1.0,
                       "p_think − p_solution (grey: filtered as frequent in general English)",
                       "general English frequency (wordfreq; the paper: Google Books Ngram)")
STAGE_FIG2 = Fig2Style(7, 3.0, 0.22, 1.2, 8, 14, 1.2, "p_think − p_solution (grey: filtered)",
                       "general English frequency (wordfreq)")


def draw_fig2(rows: pd.DataFrame, threshold: float | None, style: Fig2Style = PAPER_FIG2):
    """Fig. 2 on a new matplotlib figure (returned, not saved): bars of p_think - p_solution per word, best on top
    (grey: filtered as frequent in general English); orange dots: general-English frequency, and the filter's
    threshold as a vertical line unless it is None."""
    import matplotlib.pyplot as plt

    height = max(style.min_height, style.row_height * len(rows) + style.pad_height)
    fig, ax = plt.subplots(figsize=(style.width, height))
    y = list(range(len(rows)))
    ax.barh(y, rows["diff"], color=["#bbbbbb" if f else "#1f77b4" for f in rows["filtered"]])
    ax.set_yticks(y, rows["word"].astype(str).tolist(), fontsize=style.fontsize)
    ax.set_xlabel(style.bar_label)
    top = ax.twiny()
    top.scatter(rows["general_frequency"].clip(lower=1e-9), y, color="tab:orange", s=style.dot_size, zorder=3)
    if threshold is not None:
        top.axvline(threshold, color="tab:orange", lw=style.line_width)
    top.set_xscale("log")
    top.set_xlabel(style.frequency_label, color="tab:orange")
    ax.set_ylim(len(rows) - 0.5, -0.5)  # best word on top, no margin from the twin axis' scatter
    return fig


def fig2_rows(art: Artifacts, n: int) -> pd.DataFrame:
    """The top-n words by p_think - p_solution, filtered ones included (the paper draws them and the threshold)."""
    table = art.parquet("vocab", "frequencies.parquet").sort_values("rank").head(n)
    return table[FIG2_COLUMNS].reset_index(drop=True)


def fig2(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    """Bars: p_think - p_solution (grey: above the general-frequency threshold); dots: general frequency."""
    figure_style()
    rows = fig2_rows(art, int(opts.fig2_words))
    threshold = art.config("vocab").get("vocab", {}).get("general_frequency_threshold")
    fig = draw_fig2(rows, float(threshold) if threshold else None, PAPER_FIG2)
    files = save_figure(fig, out, "fig2")
    records = rows.astype({"word": str, "filtered": bool}).to_dict("records")
    files.append(write_data(out, "fig2", {"threshold": threshold, "words": records}))
    kept = rows.loc[~rows["filtered"], "word"].astype(str).tolist()
    ours = {"words_plotted": len(rows), "unfiltered_in_plot": len(kept), "top_unfiltered": kept[:10],
            "threshold": threshold, "pairs": art.meta("vocab").get("summary", {}).get("pairs")}
    return Item("fig2", "Fig. 2", f"Top {len(rows)} words by p_think − p_solution", files, ours=ours)


def vocabulary_groups(vocabulary: list[str]) -> dict[str, list[str]]:
    """Surface forms by word (`vocab.vocabulary.groups`, the released code's grouping)."""
    from reasoning_sae.vocab.vocabulary import groups

    return groups(vocabulary)


def fig5(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    """The vocabulary R: a word list figure and a table of each word's surface forms."""
    figure_style()
    import matplotlib.pyplot as plt

    groups = vocabulary_groups(art.json("vocab", "vocabulary.json"))
    frame = pd.DataFrame({"word": list(groups),
                          "surface forms": [", ".join(json.dumps(f, ensure_ascii=False) for f in forms)
                                            for forms in groups.values()]})
    files, table = write_table(frame, out, "fig5", "The reasoning vocabulary R and the surface forms matched",
                               note=f"{len(groups)} words, {sum(map(len, groups.values()))} surface forms.")
    fig = plt.figure(figsize=(2.5, 0.2 * len(groups) + 0.4))
    fig.text(0.05, 0.95, "\n".join(f'"{w}"' for w in groups), va="top", family="monospace", fontsize=9,
             bbox={"facecolor": "#f4f4f4", "edgecolor": "#999999"})  # the tight bbox crops to this box
    files = save_figure(fig, out, "fig5") + files
    ours = {"words": list(groups), "n_words": len(groups), "n_surface_forms": sum(map(len, groups.values()))}
    return Item("fig5", "Fig. 5", "The reasoning vocabulary R", files, ours=ours, markdown=table)
