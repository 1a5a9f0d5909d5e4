"""Table 1 (steering: accuracy and thinking length per feature and benchmark) and Table 2 (word ban), from
`evaluate/results.csv` (one row per cell and metric), each accuracy and length with its interval and each row's
difference from the unsteered one (figures/intervals.py, from `evaluate/attempts.parquet`)."""

import re
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.figures import intervals
from reasoning_sae.figures.common import Artifacts, Item, fmt, not_run, paper_run, write_table

LENGTH, WORDS = intervals.LENGTH, "reasoning_words_per_1k"
DEFAULT_ROW, REASON_ROW = "Default (none banned)", "Reason (ban R)"
NO_STEERING = "No steering"  # Cell.row of the baseline
FORCING_ROW = "Budget forcing"  # Cell.row of a budget-forcing cell
INTERVALS_NOTE = (" {} columns: bootstrap intervals over problems with each problem's samples resampled inside it "
                  "(maj@k: over problems); the differences below are paired on the same problems.")
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


def shown_metrics(long: pd.DataFrame, thousands: bool) -> list[tuple[str, str, float]]:
    """(metric, column title, scale) of the columns shown per task."""
    accuracy = accuracy_metrics(long["metric"])
    return [(m, f"{m} (%)", 100.0) for m in accuracy] + [
        (LENGTH, "tokens (K)" if thousands else "tokens", 1e-3 if thousands else 1.0), (WORDS, "words/1k", 1.0)]


def wide(long: pd.DataFrame, order: list[str], thousands: bool) -> pd.DataFrame:
    """Rows (in `order`) x columns `<task> <metric>`: accuracy in %, length in tokens or K tokens, words per 1k."""
    table = pd.DataFrame(index=order)
    for task in dict.fromkeys(long["task"]):
        for metric, title, scale in shown_metrics(long, thousands):
            values = long[(long["task"] == task) & (long["metric"] == metric)].groupby("row", sort=False)["value"]
            table[f"{task} {title}"] = values.mean().reindex(order) * scale
    return table


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    frame = table.map(fmt)
    frame.insert(0, "", table.index)
    return frame.reset_index(drop=True)


def table1_rows(long: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Table 1's cells (the baseline and every steering cell: no word ban) and its row order."""
    steering = long[long["ban"] == ""]
    return steering, list(dict.fromkeys(steering["row"]))


def table1_numbers(long: pd.DataFrame) -> pd.DataFrame:
    """Table 1's numbers: the baseline and every steering cell (no word ban)."""
    return wide(*table1_rows(long), in_thousands(long))


def table2_numbers(long: pd.DataFrame) -> pd.DataFrame:
    """Table 2's numbers: Default (baseline), Reason (ban R), Random (mean over the random draws)."""
    return wide(*table2_rows(long), in_thousands(long))


def table2_rows(long: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Table 2's cells, their `row` renamed: Default (baseline), Reason (ban R), Random (the random draws); the row
    order."""
    rows = long[(long["ban"] != "") | (long["label"] == "baseline")].copy()  # no vector or forcing cell
    draws = rows["ban"].str.startswith("random")
    n_draws = rows.loc[draws, "ban"].nunique()
    rows.loc[rows["ban"] == "", "row"] = DEFAULT_ROW
    rows.loc[rows["ban"] == "reason", "row"] = REASON_ROW
    rows.loc[draws, "row"] = f"Random (mean of {n_draws})"
    order = [r for r in (DEFAULT_ROW, REASON_ROW, f"Random (mean of {n_draws})") if r in set(rows["row"])]
    return rows, order


def table1(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    title = "Steering: accuracy and thinking length per feature and benchmark"
    long = results(art)
    numbers = table1_numbers(long)
    if numbers.empty:
        return not_run("table1", "Table 1", title, "the evaluation has no steering cells (set steering.features)")
    gamma = ", ".join(f"{g:g}" for g in sorted(set(long["gamma"].dropna())))
    shown = uncertainty(art, opts, long, numbers, *table1_rows(long), NO_STEERING)
    files, table = write_table(shown.frame, out, "table1", title,
                               note=f"Steering strength γ = {gamma or '–'}; accuracy in %, thinking length as the "
                                    "mean per sample, reasoning-vocabulary words per 1,000 generated tokens."
                                    + vector_note(art, numbers) + INTERVALS_NOTE.format(shown.settings.name))
    table += shown.write(out, "table1", f"Differences from {NO_STEERING}: each row minus {NO_STEERING}")
    return Item("table1", "Table 1", title, files, ours={**_ours(numbers), **shown.ours()},
                markdown=table + paper_points(art, opts, numbers, shown, "table1"), notes=forcing_notes(art, long))


def vector_note(art: Artifacts, numbers: pd.DataFrame) -> str:
    """What a DiffMean row steered with: the evaluate stage records the vector's norm and its reference features."""
    reference = art.meta("evaluate").get("summary", {}).get("vectors")
    if not reference or not any(str(row).startswith("DiffMean") for row in numbers.index):
        return ""
    features = "+".join(f"#{f}" for f in reference["reference"])
    return (f" DiffMean: the score stage's mean activation at the SAE's hook over ReasonScore's reasoning windows "
            f"minus the mean over the other tokens (arXiv 2506.18167), added at every steered position and scaled to the "
            f"norm of feature {features}'s update, γ · f_max · ||W_dec|| = γ · {reference['norm']:.3g}.")


def forcing_notes(art: Artifacts, long: pd.DataFrame) -> list[str]:
    """How often each budget-forcing cell forced (its metrics.json; cells written before the counts were kept have
    none)."""
    from reasoning_sae.figures.cells import cell_metrics, find_cell

    notes = []
    for (task, label), _ in long[long["row"] == FORCING_ROW].groupby(["task", "label"], sort=False):
        cell = find_cell(art, long, task, label)
        counts = cell_metrics(cell).get("budget_forcing") if cell is not None else None
        if counts:
            notes.append(f"{task}, {label}: budget forcing forced {counts['forced_samples']} of {counts['samples']} "
                         f"samples ({counts['forces']} forces)")
    return notes


def table2(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    title = "Word ban: accuracy and thinking length without the reasoning vocabulary"
    long = results(art)
    if not (long["ban"] != "").any():
        return not_run("table2", "Table 2", title, "the evaluation ran no word-ban cells "
                                                   "(benchmark.word_ban.enabled=true)")
    numbers = table2_numbers(long)
    shown = uncertainty(art, opts, long, numbers, *table2_rows(long), DEFAULT_ROW)
    files, table = write_table(shown.frame, out, "table2", title,
                               note="Default: nothing banned; Reason: the vocabulary R banned while thinking; Random: "
                                    "as many random words from p_think banned, averaged over the draws (their answers "
                                    "pooled per problem for the intervals)." + INTERVALS_NOTE.format(
                                        shown.settings.name))
    table += shown.write(out, "table2", f"Differences from {DEFAULT_ROW}: each ban minus {DEFAULT_ROW}")
    return Item("table2", "Table 2", title, files, ours={**_ours(numbers), **shown.ours()},
                markdown=table + paper_points(art, opts, numbers, shown, "table2"), notes=ban_changes(art, long))


class Uncertainty(NamedTuple):
    """A table's intervals and differences (figures/intervals.py), and the table as shown with them."""

    settings: intervals.Settings
    baseline: str                       # the row every other row is compared with
    found: pd.DataFrame                 # an Interval per shown number (accuracy and length)
    differences: list[intervals.Compared]
    frame: pd.DataFrame                 # the formatted table, an interval column after each number that has one
    summary: str                        # which differences are distinguishable from noise, in words

    def write(self, out: Path, key: str, caption: str) -> str:
        """The differences (and the summary) after the table in tables/<key>.md and .tex; their Markdown."""
        if not self.differences:
            return ""
        table = intervals.difference_table(self.differences, self.baseline, self.settings)
        return intervals.write_differences(out, key, table, caption, self.summary)

    def ours(self) -> dict:
        clear = sum(c.clear for c in self.differences)
        return {"distinguishable": f"{clear} of {len(self.differences)} differences",
                "intervals": self.settings._asdict()}


def uncertainty(art: Artifacts, opts: DictConfig, long: pd.DataFrame, numbers: pd.DataFrame, rows: pd.DataFrame,
                order: list[str], baseline: str) -> Uncertainty:
    """Intervals of `numbers` (rows x columns of a table) and each row's difference from `baseline`."""
    settings, attempts = intervals.Settings.of(opts), intervals.records(art)
    shown = [m for m in shown_metrics(long, in_thousands(long)) if m[0] != WORDS]
    found = intervals.intervals(rows, order, attempts, settings, shown)
    intervals.check_points(numbers, found)
    compared = intervals.differences(rows, order, baseline, attempts, settings, shown)
    return Uncertainty(settings, baseline, found, compared,
                       intervals.with_intervals(formatted(numbers), found, settings),
                       intervals.summary(compared, baseline, settings, intervals.scale_text(attempts, rows)))


def paper_points(art: Artifacts, opts: DictConfig, numbers: pd.DataFrame, shown: Uncertainty, name: str) -> str:
    """A paper experiment on the paper's model: the paper's points beside ours and our intervals."""
    from reasoning_sae.figures.paper_checks import table1_key, table2_key
    from reasoning_sae.paper_expected import load_expected

    run = paper_run(art, bool(opts.get("paper", False)))
    if not run.compare:
        return ""
    expected = load_expected(name)
    table = expected["table"]
    if name == "table1" and not run.feature_ids:  # another SAE's feature ids name other latents
        table = {**table, "rows": [r for r in table["rows"] if r[0] == "no_steering"]}
    key = table1_key(float(expected["settings"]["gamma"])) if name == "table1" else table2_key
    return intervals.paper_beside(numbers, shown.found, table, key, shown.settings)


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
