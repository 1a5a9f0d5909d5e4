"""Tables 5-9: the same problem answered by the unsteered model and by a steered one, from the lm-eval samples of
the evaluation cells. Problems where steering turned a wrong answer into a right one come first (as in the paper's
Tables 6 and 8), then problems both got right, then the rest."""

import json
import re
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.figures.cells import find_cell, samples
from reasoning_sae.figures.common import Artifacts, Item, fmt, not_run, write_table
from reasoning_sae.figures.steering import accuracy_metrics, results

FIRST_TABLE = 5
OMITTED = re.compile(r" \[… \d+ characters omitted …\] ")
TITLE = "An evaluation problem and the outputs of the unsteered and the steered model"


def first_response(sample: dict) -> str:
    response = sample["resps"][0]
    return str(response[0] if isinstance(response, list) else response)


def problem_text(doc: dict) -> str:
    for key in ("problem", "Problem", "question", "Question"):
        if key in doc:
            return str(doc[key])
    return json.dumps(doc, ensure_ascii=False)


def shorten(text: str, limit: int) -> str:
    """The text, or its start and end with the middle replaced by a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    head = int(0.6 * limit)
    return f"{text[:head]} [… {len(text) - limit} characters omitted …] {text[len(text) - (limit - head):]}"


def pick(base: dict[int, dict], steered: dict[int, dict], metric: str, n: int) -> list[int]:
    """Doc ids: steering helped, then both right, then the rest; by doc id within each."""
    def priority(doc: int) -> tuple:
        b, s = float(base[doc].get(metric, 0)), float(steered[doc].get(metric, 0))
        return (0 if s > b else 1 if s == b and s > 0 else 2, doc)

    return sorted(set(base) & set(steered), key=priority)[:n]


def steered_label(long: pd.DataFrame, task: str, wanted: str | None) -> tuple[str, str] | None:
    """(label, row name) of the steered cell to show: `wanted`, else the task's most accurate steering cell."""
    cells = long[(long["task"] == task) & (long["features"] != "") & (long["ban"] == "")]
    if wanted:
        cells = cells[cells["label"] == wanted]
    if cells.empty:
        return None
    metric = accuracy_metrics(cells["metric"])[:1]
    accuracy = cells[cells["metric"].isin(metric)].groupby("label", sort=False)["value"].first()
    label = accuracy.idxmax() if len(accuracy) else cells["label"].iloc[0]
    return label, cells.loc[cells["label"] == label, "row"].iloc[0]


def tables5_9(art: Artifacts, out: Path, opts: DictConfig) -> list[Item]:
    keys = [(f"table{FIRST_TABLE + i}", f"Table {FIRST_TABLE + i}") for i in range(int(opts.examples))]
    long = results(art)
    task = opts.example_task or next(iter(dict.fromkeys(long.loc[long["features"] != "", "task"])), None)
    chosen = steered_label(long, task, opts.example_cell) if task else None
    if chosen is None:
        return [not_run(k, label, TITLE, f"no steering cell{' ' + opts.example_cell if opts.example_cell else ''} "
                                         f"in the evaluation of {task or 'any task'} (set steering.features, or "
                                         f"figures.example_cell to a label of evaluate/results.csv)")
                for k, label in keys]
    label, row = chosen
    cells = {name: find_cell(art, long, task, name) for name in ("baseline", label)}
    if any(c is None for c in cells.values()):
        return [not_run(k, lab, TITLE, f"the evaluation cells behind evaluate/results.csv for {task} are gone from "
                                       f"evaluate-cells/: rerun the evaluate stage") for k, lab in keys]
    base = {s["doc_id"]: s for s in samples(cells["baseline"], task)}
    steered = {s["doc_id"]: s for s in samples(cells[label], task)}
    metric = next((m for m in accuracy_metrics(long["metric"]) if any(m in s for s in base.values())), "pass@1")
    docs = pick(base, steered, metric, len(keys))
    items = []
    for (key, table_label), doc in zip(keys, docs + [None] * (len(keys) - len(docs)), strict=True):
        if doc is None:
            items.append(not_run(key, table_label, TITLE, f"{task} has only {len(docs)} problems with both outputs"))
            continue
        b, s = base[doc], steered[doc]
        limit = int(opts.example_chars)
        frame = pd.DataFrame({"": ["Output", f"{metric} on this problem"],
                              "No steering": [shorten(first_response(b), limit), fmt(b.get(metric), 2)],
                              f"Steered ({row})": [shorten(first_response(s), limit), fmt(s.get(metric), 2)]})
        note = (f"Problem ({task}, doc {doc}): {problem_text(b['doc'])}\n\nCorrect answer: {b.get('target')}\n\n"
                f"First sample of each; cells {cells['baseline'].name} and {cells[label].name}.")
        files, table = write_table(frame, out, key, f"{TITLE} ({row})", note=note,
                                   column_format=r"p{2cm}p{0.4\linewidth}p{0.4\linewidth}")
        ours = {"task": task, "doc_id": doc, "steered": row, "metric": metric, "target": str(b.get("target")),
                "baseline": b.get(metric), "steered_score": s.get(metric),
                "cells": [cells["baseline"].name, cells[label].name]}
        items.append(Item(key, table_label, TITLE, files, ours=ours, markdown=table))
    return items
