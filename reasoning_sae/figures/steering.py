"""Table 1 (steering: accuracy and thinking length per feature and benchmark) and Table 2 (word ban), from
`evaluate/results.csv` (one row per cell and metric)."""

import re
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.figures.common import Artifacts, Item, fmt, not_run, write_table

LENGTH, WORDS = "think_tokens", "reasoning_words_per_1k"
DEFAULT_ROW, REASON_ROW = "Default (none banned)", "Reason (ban R)"
TEXT_COLUMNS = {"task": str, "label": str, "row": str, "features": str, "ban": str}


def results(art: Artifacts) -> pd.DataFrame:
    """evaluate/results.csv with its text columns as text ('' for none)."""
    frame = art.csv("evaluate", "results.csv", dtype=TEXT_COLUMNS)
    return frame.fillna({c: "" for c in TEXT_COLUMNS})


def accuracy_metrics(metrics) -> list[str]:
    """The accuracy columns shown: the largest maj@k (the paper's maj@4) and pass@1."""
    metrics = set(metrics)
    majs = sorted((m for m in metrics if re.fullmatch(r"maj@\d+", m)), key=lambda m: int(m[4:]))
    return [*majs[-1:], *(["pass@1"] if "pass@1" in metrics else [])]


def in_thousands(long: pd.DataFrame) -> bool:
    """Lengths in K tokens (the paper's unit) once any mean reaches 1,000 tokens."""
    lengths = long.loc[long["metric"] == LENGTH, "value"]
    return bool(len(lengths)) and float(lengths.max()) >= 1000


def wide(long: pd.DataFrame, order: list[str], thousands: bool) -> pd.DataFrame:
    """Rows (in `order`) x columns `<task> <metric>`: accuracy in %, length in tokens or K tokens, words per 1k."""
    accuracy = accuracy_metrics(long["metric"])
    shown = [(m, f"{m} (%)", 100.0) for m in accuracy] + [
        (LENGTH, "tokens (K)" if thousands else "tokens", 1e-3 if thousands else 1.0), (WORDS, "words/1k", 1.0)]
    table = pd.DataFrame(index=order)
    for task in dict.fromkeys(long["task"]):
        for metric, title, scale in shown:
            values = long[(long["task"] == task) & (long["metric"] == metric)].groupby("row", sort=False)["value"]
            table[f"{task} {title}"] = values.mean().reindex(order) * scale
    return table


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    frame = table.map(fmt)
    frame.insert(0, "", table.index)
    return frame.reset_index(drop=True)


def table1_numbers(long: pd.DataFrame) -> pd.DataFrame:
    """Table 1's numbers: the baseline and every steering cell (no word ban)."""
    steering = long[long["ban"] == ""]
    return wide(steering, list(dict.fromkeys(steering["row"])), in_thousands(long))


def table2_numbers(long: pd.DataFrame) -> pd.DataFrame:
    """Table 2's numbers: Default (baseline), Reason (ban R), Random (mean over the random draws)."""
    rows = long[(long["ban"] != "") | (long["features"] == "")].copy()
    draws = rows["ban"].str.startswith("random")
    n_draws = rows.loc[draws, "ban"].nunique()
    rows.loc[rows["ban"] == "", "row"] = DEFAULT_ROW
    rows.loc[rows["ban"] == "reason", "row"] = REASON_ROW
    rows.loc[draws, "row"] = f"Random (mean of {n_draws})"
    order = [r for r in (DEFAULT_ROW, REASON_ROW, f"Random (mean of {n_draws})") if r in set(rows["row"])]
    return wide(rows, order, in_thousands(long))


def table1(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    title = "Steering: accuracy and thinking length per feature and benchmark"
    long = results(art)
    numbers = table1_numbers(long)
    if numbers.empty:
        return not_run("table1", "Table 1", title, "the evaluation has no steering cells (set steering.features)")
    gamma = ", ".join(f"{g:g}" for g in sorted(set(long["gamma"].dropna())))
    files, table = write_table(formatted(numbers), out, "table1", title,
                               note=f"Steering strength γ = {gamma or '–'}; accuracy in %, thinking length as the "
                                    "mean per sample, reasoning-vocabulary words per 1,000 generated tokens.")
    return Item("table1", "Table 1", title, files, ours=_ours(numbers), markdown=table)


def table2(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    title = "Word ban: accuracy and thinking length without the reasoning vocabulary"
    long = results(art)
    if not (long["ban"] != "").any():
        return not_run("table2", "Table 2", title, "the evaluation ran no word-ban cells "
                                                   "(benchmark.word_ban.enabled=true)")
    numbers = table2_numbers(long)
    files, table = write_table(formatted(numbers), out, "table2", title,
                               note="Default: nothing banned; Reason: the vocabulary R banned while thinking; Random: "
                                    "as many random words from p_think banned, averaged over the draws.")
    return Item("table2", "Table 2", title, files, ours=_ours(numbers), markdown=table, notes=ban_changes(art, long))


def ban_changes(art: Artifacts, long: pd.DataFrame) -> list[str]:
    """How many sampled answers each ban changed (same seeds, so an unchanged answer is one the ban never touched):
    a ban of words the model does not write leaves its row equal to Default by construction."""
    from reasoning_sae.figures.cells import find_cell, samples

    notes = []
    for task in dict.fromkeys(long["task"]):
        base = find_cell(art, long, task, "baseline")
        if base is None:
            continue
        answers = {s["doc_id"]: s["resps"] for s in samples(base, task)}
        labels = dict.fromkeys(long.loc[(long["task"] == task) & (long["ban"] != ""), "label"])
        for label in labels:
            cell = find_cell(art, long, task, label)
            if cell is None:
                continue
            pairs = [(a, b) for s in samples(cell, task) for a, b in zip(_flat(answers.get(s["doc_id"], [])),
                                                                            _flat(s["resps"]), strict=False)]
            changed = sum(a != b for a, b in pairs)
            notes.append(f"{task}, {label}: the ban changed {changed} of {len(pairs)} sampled answers")
    return notes


def _flat(resps: list) -> list[str]:
    return [str(r) for resp in resps for r in (resp if isinstance(resp, list) else [resp])]


def _ours(numbers: pd.DataFrame) -> dict:
    return {"rows": len(numbers), "tasks": list(dict.fromkeys(c.split(" ")[0] for c in numbers.columns))}
