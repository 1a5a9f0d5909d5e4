"""The uncertainty of Tables 1-2: every accuracy and thinking length with its interval, and every row's difference from
the unsteered row with its paired interval and test, from the evaluate stage's per-attempt records
(`evaluate/attempts.parquet`: one row per cell, problem and sampled answer) through evaluate/uncertainty.py.

pass@1 and thinking length are resampled in two stages (problems, then each problem's answers); maj@k is one vote
per problem, so its interval resamples problems only. A row pooling several cells (Table 2's random draws) pools their
answers per problem. A difference is "distinguishable from noise" when its paired interval excludes 0 and the paired
sign-flip test agrees (p below 1 - level): with a handful of problems the percentile bootstrap's interval is too
narrow (2 problems that moved the same way give an interval clear of 0, yet p = 0.5), and the exact test is not."""

from typing import NamedTuple

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.attempts import ATTEMPTS
from reasoning_sae.evaluate.uncertainty import Difference, Interval, interval, paired_difference
from reasoning_sae.figures.common import Artifacts, fmt, latex, markdown

LENGTH = "think_tokens"
PER_ATTEMPT = {"pass@1": "correct", LENGTH: "think_tokens"}  # table metric -> its per-answer column
SOURCE = f"evaluate/{ATTEMPTS}"


class Settings(NamedTuple):
    """figures.uncertainty: bootstrap resamples (and sign flips), the interval level, the seed."""

    resamples: int
    level: float
    seed: int

    @classmethod
    def of(cls, opts: DictConfig) -> "Settings":
        from reasoning_sae.config_check import SETTINGS, check_one

        u = opts.uncertainty
        for name in cls._fields:  # the CLI checked them already; a direct call gets the same one-line errors
            check_one(f"figures.uncertainty.{name}", u[name], SETTINGS[f"figures.uncertainty.{name}"])
        return cls(int(u.resamples), float(u.level), int(u.seed))

    @property
    def name(self) -> str:
        return f"{100 * self.level:g}% CI"


class Compared(NamedTuple):
    """One row's difference from the baseline row on one benchmark and metric, in the table's units."""

    row: str
    task: str
    metric: str        # the column title: "pass@1 (%)", "tokens", ...
    accuracy: bool
    difference: Difference
    clear: bool        # distinguishable from noise: the interval excludes 0 and p < 1 - level


def records(art: Artifacts) -> pd.DataFrame:
    """The evaluate stage's per-attempt records (a UserError naming the stage to rerun when it predates them)."""
    return art.parquet("evaluate", ATTEMPTS)


def values(attempts: pd.DataFrame, task: str, labels: list[str], metric: str) -> pd.DataFrame:
    """[problems, attempts] of one table cell, indexed by doc_id: the labels' answers side by side (maj@k: one vote
    per problem and label)."""
    cells = attempts[(attempts["task"] == task) & attempts["label"].isin(labels)]
    missing = sorted(set(labels) - set(cells["label"]))
    if missing or metric not in cells.columns and metric not in PER_ATTEMPT:
        raise UserError(f"{SOURCE} holds no {metric} records of {task} {missing or labels}: rerun the evaluate stage "
                        f"(its cells are cached)")
    if metric in PER_ATTEMPT:
        table = cells.pivot_table(index="doc_id", columns=["label", "attempt"], values=PER_ATTEMPT[metric])
    else:
        table = cells.groupby(["doc_id", "label"])[metric].first().unstack("label")
    if table.isna().any().any():
        raise UserError(f"{SOURCE}: the problems of {task} {labels} have unequal numbers of answers: rerun the "
                        f"evaluate stage")
    return table.sort_index()


def scaled(value: Interval | Difference, scale: float):
    return value._replace(**{k: getattr(value, k) * scale for k in ("mean", "delta", "low", "high")
                             if k in value._fields})


def row_labels(rows: pd.DataFrame, task: str, row: str) -> list[str]:
    """The cells (labels) behind one table row of one task."""
    return list(dict.fromkeys(rows.loc[(rows["task"] == task) & (rows["row"] == row), "label"]))


def intervals(rows: pd.DataFrame, order: list[str], attempts: pd.DataFrame, settings: Settings,
              shown: list[tuple[str, str, float]]) -> pd.DataFrame:
    """An Interval (or None) per row (`order`) and `<task> <title>` column of the shown accuracy and length metrics:
    the same cells as the table's numbers, in its units."""
    table = pd.DataFrame(index=order, dtype=object)
    for task in dict.fromkeys(rows["task"]):
        for metric, title, scale in shown:
            column = []
            for row in order:
                labels = row_labels(rows, task, row)
                column.append(scaled(interval(values(attempts, task, labels, metric).to_numpy(), *settings), scale)
                              if labels else None)
            table[f"{task} {title}"] = pd.Series(column, index=order, dtype=object)
    return table


def differences(rows: pd.DataFrame, order: list[str], baseline: str, attempts: pd.DataFrame, settings: Settings,
                shown: list[tuple[str, str, float]]) -> list[Compared]:
    """Every row's difference from `baseline` per task and shown metric, paired on the problems both ran."""
    found = []
    for row in order:
        for task in dict.fromkeys(rows["task"]):
            base, labels = row_labels(rows, task, baseline), row_labels(rows, task, row)
            if row == baseline or not base or not labels:
                continue
            for metric, title, scale in shown:
                a, b = values(attempts, task, base, metric), values(attempts, task, labels, metric)
                shared = a.index.intersection(b.index)
                diff = paired_difference(a.loc[shared].to_numpy(), b.loc[shared].to_numpy(), *settings)
                found.append(Compared(row, task, title, metric != LENGTH, scaled(diff, scale),
                                      diff.distinguishable))
    return found


def check_points(numbers: pd.DataFrame, found: pd.DataFrame) -> None:
    """Each interval's mean is the table's number: the records and results.csv come from the same cells."""
    for column in found.columns:
        for row, value in found[column].items():
            point = numbers.loc[row, column]
            if value is not None and not np.isclose(value.mean, point, rtol=1e-9, atol=1e-9):
                raise UserError(f"{SOURCE} does not hold evaluate/results.csv's cells ({row}, {column}: mean "
                                f"{value.mean:.6g}, results.csv {point:.6g}): rerun the evaluate stage")


def span(low: float, high: float, signed: bool = False) -> str:
    show = (lambda v: f"{v:+.1f}") if signed else fmt
    return f"[{show(low)}, {show(high)}]"


def with_intervals(shown: pd.DataFrame, found: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The formatted table with an interval column after each number column that has one (the number columns stay
    as they are, so `verify` and the expectations read them unchanged)."""
    frame = shown.copy()
    for column in found.columns:
        cells = ["–" if v is None else span(v.low, v.high) for v in found[column]]
        frame.insert(frame.columns.get_loc(column) + 1, f"{column} {settings.name}", cells)
    return frame


def difference_table(found: list[Compared], baseline: str, settings: Settings) -> pd.DataFrame:
    return pd.DataFrame([[c.row, c.task, c.metric, f"{c.difference.delta:+.1f}",
                          span(c.difference.low, c.difference.high, signed=True), f"{c.difference.p_value:.3f}",
                          "yes" if c.clear else "no"] for c in found],
                        columns=["", "task", "metric", f"Δ vs {baseline}", settings.name, "p", "distinguishable"])


def scale_text(attempts: pd.DataFrame, rows: pd.DataFrame) -> str:
    """Problems x answers per cell of each task shown, e.g. `math500: 500 problems × 4 samples`."""
    parts = []
    for task in dict.fromkeys(rows["task"]):
        cells = attempts[(attempts["task"] == task) & attempts["label"].isin(set(rows["label"]))]
        per_cell = cells.groupby("label")
        problems, answers = per_cell["doc_id"].nunique().max(), per_cell.size().max()
        parts.append(f"{task}: {problems} problems × {answers // max(problems, 1)} samples")
    return "; ".join(parts)


def summary(found: list[Compared], baseline: str, settings: Settings, scale: str) -> str:
    """Which differences from `baseline` are distinguishable from noise, in words, from `found` alone."""
    if not found:
        return ""
    head = (f"**Distinguishable from noise at this scale** ({scale} per cell; a difference counts when its "
            f"{100 * settings.level:g}% paired bootstrap interval excludes 0 and the paired sign-flip test gives "
            f"p < {1 - settings.level:.2g}): ")
    clear = [c for c in found if c.clear]
    if not clear:
        return head + f"none of the {len(found)} differences from {baseline}."
    listed = "; ".join(f"{c.row} on {c.task} {c.metric} {c.difference.delta:+.1f} "
                       f"{span(c.difference.low, c.difference.high, signed=True)} (p = {c.difference.p_value:.3f})"
                       for c in clear)
    rest = len(found) - len(clear)
    tail = "" if not rest else f" The other {rest} are not" + (
        ", every accuracy difference among them." if any(c.accuracy for c in found)
        and not any(c.accuracy for c in clear) else ".")
    return head + f"{len(clear)} of {len(found)} differences from {baseline}: {listed}.{tail}"


def write_differences(out, key: str, table: pd.DataFrame, caption: str, text: str) -> str:
    """Append the differences (and the summary) to tables/<key>.md and .tex; returns their Markdown."""
    section = f"\n**{caption}**\n\n{markdown(table)}" + (f"\n{text}\n" if text else "")
    with open(out / "tables" / f"{key}.md", "a") as md:
        md.write(section)
    with open(out / "tables" / f"{key}.tex", "a") as tex:
        tex.write(latex(table, caption, f"{key}-differences").replace("Δ", r"$\Delta$"))
    return section


def paper_beside(numbers: pd.DataFrame, found: pd.DataFrame, expected: dict, row_key, settings: Settings) -> str:
    """The paper's point of each number it reports beside ours and our interval (paper experiments: the paper's
    expected values stay as they are), and whether their point lies inside our interval."""
    from reasoning_sae.figures.paper_checks import steering_numbers

    def bound(name: str) -> pd.DataFrame:
        return found.map(lambda v: np.nan if v is None else getattr(v, name))

    ours, lows, highs = (steering_numbers(frame, row_key) for frame in (numbers, bound("low"), bound("high")))
    lines = []
    for row in expected["rows"]:
        for column, value in zip(expected["columns"][1:], row[1:], strict=True):
            if value is None:
                continue
            mine = ours.get(row[0], {}).get(column)
            low, high = lows.get(row[0], {}).get(column), highs.get(row[0], {}).get(column)
            known = mine is not None and low is not None and low == low
            inside = known and low - 1e-9 * abs(low) <= value <= high + 1e-9 * abs(high)  # float round-off
            lines.append([str(row[0]), column, fmt(value), fmt(mine) if known else "–",
                          span(low, high) if known else "–", ("yes" if inside else "no") if known else "–"])
    frame = pd.DataFrame(lines, columns=["row", "quantity", "paper", "ours", f"ours {settings.name}",
                                         "paper inside"])
    return f"\n**Ours beside the paper's points** (the paper's numbers as published)\n\n{markdown(frame)}"
