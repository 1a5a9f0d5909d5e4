"""Evaluation results as tables: one long frame (cell x metric), Table 1 (steering) and Table 2 (word ban).

Accuracy metrics are pass@1 (mean over samples) and maj@k; lengths are shown in tokens (the paper: K tokens)."""

import re

import pandas as pd

from reasoning_sae.markdown import markdown_table

ACCURACY = re.compile(r"^(pass@1|maj@\d+)(/.*)?$")
LENGTH = "think_tokens"


def results_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (cell, task, metric) from the cells' metrics.json records."""
    rows = []
    for record in records:
        cell = record["cell"]
        for task, metrics in record["metrics"].items():
            rows += [{"task": task, "label": record["label"], "row": record["row"],
                      "features": "+".join(map(str, cell["features"])), "gamma": cell["gamma"], "ban": cell["ban"],
                      "metric": metric, "value": value} for metric, value in metrics.items()]
    return pd.DataFrame(rows, columns=["task", "label", "row", "features", "gamma", "ban", "metric", "value"])


def _columns(frame: pd.DataFrame) -> list[str]:
    accuracy = sorted({m for m in frame["metric"] if ACCURACY.match(m)}, key=lambda m: (not m.startswith("maj"), m))
    return [*accuracy, LENGTH, "reasoning_words_per_1k"]


def _markdown(wide: pd.DataFrame) -> str:
    """The wide frame with its row labels as a first, unnamed column and numbers to one decimal."""
    rows = [[str(i), *(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row)]
            for i, row in zip(wide.index, wide.itertuples(index=False), strict=True)]
    return markdown_table(pd.DataFrame(rows, columns=["", *wide.columns]))


def _wide(frame: pd.DataFrame, row_order: list[str]) -> pd.DataFrame:
    shown = frame[frame["metric"].isin(_columns(frame))].copy()
    shown["value"] = [v * 100 if ACCURACY.match(m) else v for v, m in zip(shown["value"], shown["metric"], strict=True)]
    wide = shown.pivot_table(index="row", columns=["task", "metric"], values="value", aggfunc="mean", sort=False)
    order = [(t, m) for t in dict.fromkeys(shown["task"]) for m in _columns(frame) if (t, m) in wide.columns]
    wide = wide[order]
    wide.columns = [f"{task} {metric}" for task, metric in order]
    return wide.reindex([r for r in row_order if r in wide.index])


def table1(frame: pd.DataFrame) -> str:
    """Paper Table 1 layout: accuracy (%) and thinking tokens per benchmark, one row per steering cell."""
    steering = frame[frame["ban"].isna()]
    if steering.empty:
        return "no steering cells\n"
    return "Accuracy in %, lengths in tokens (mean per sample).\n\n" + _markdown(
        _wide(steering, list(dict.fromkeys(steering["row"]))))


def table2(frame: pd.DataFrame) -> str:
    """Paper Table 2 layout: Default, Reason (ban R) and Random (mean over the random draws)."""
    rows = frame[frame["ban"].notna() | (frame["label"] == "baseline")].copy()  # no vector or forcing cell
    rows.loc[rows["ban"].isna(), "row"] = "Default (none banned)"
    draws = rows["ban"].fillna("").str.startswith("random")
    rows.loc[draws, "row"] = f"Random (ban random words, mean of {rows.loc[draws, 'ban'].nunique()})"
    order = ["Default (none banned)", "Reason (ban R)", *dict.fromkeys(rows.loc[draws, "row"])]
    return "Accuracy in %, lengths in tokens (mean per sample).\n\n" + _markdown(_wide(rows, order))
