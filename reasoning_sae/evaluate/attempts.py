"""Per-attempt records of an evaluation cell, the input of the tables' intervals (evaluate/uncertainty.py): one row per
(problem, sampled answer) with whether the answer is correct and how many tokens it thought for, and the problem's
maj@k votes on each of its rows.

lm-eval logs one sample per problem holding all its answers and only the problem's mean (pass@1). Each answer is
graded here by the task's own grading, its yaml's `process_results`, applied to that answer alone (its pass@1 is then
0 or 1); the per-problem means are checked against lm-eval's. Thinking length is counted as
`metrics.generation_metrics` counts it (the tokens before the model's think_end), so the records' means are the
cell's metrics."""

import functools
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.metrics import thinking_text, token_count

log = logging.getLogger(__name__)
ATTEMPTS = "attempts.parquet"  # a cell's records (in its folder) and the evaluate stage's (every cell, keyed)
COLUMNS = ("doc_id", "attempt", "correct", "think_tokens")
MAJ = re.compile(r"^maj@\d+$")


@functools.cache
def task_grading(task: str) -> Callable[[dict, list], dict]:
    """The `process_results` of one of our task yamls (reasoning_sae/lm_eval/tasks/<task>.yaml)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from reasoning_sae.lm_eval import task_dir

    return load_yaml(task_dir() / f"{task}.yaml", resolve_func=True)["process_results"]


def texts(resps: list) -> list[str]:
    """A sample's answers, flat: one request's repeats are a list (take_first_k), lm-eval's default a string."""
    return [text for resp in resps for text in (resp if isinstance(resp, list) else [resp])]


def read_samples(cell: Path, task: str) -> list[dict]:
    """lm-eval's logged samples of a cell (its newest samples file of `task`), by doc_id."""
    files = sorted((cell / "lm_eval").glob(f"**/samples_{task}_*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise UserError(f"{cell}: no lm-eval samples of {task}: delete the cell folder and rerun the evaluate stage")
    rows = [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["doc_id"])


def graded(sample: dict, grade: Callable[[dict, list], dict], ask: bool) -> list[float]:
    """1.0 / 0.0 per answer of one sample. `ask=False` for a cell graded by an LLM verifier whose records were not
    written when it ran: its verdicts are not asked for again (money, minutes); the problem's k * pass@1 correct
    answers are taken to be its first ones. Which of them were right does not change an interval: the bootstrap
    resamples a problem's answers as a set."""
    from reasoning_sae.evaluate.grading import Grading

    answers, logged = texts(sample["filtered_resps"]), float(sample["pass@1"])
    if not ask and Grading.of(sample["doc"]).mode == "llm":
        right = round(logged * len(answers))
        return [1.0] * right + [0.0] * (len(answers) - right)
    correct = [float(grade(sample["doc"], [[answer]])["pass@1"]) for answer in answers]
    if abs(sum(correct) / len(correct) - logged) > 1e-9:
        raise UserError(f"problem {sample['doc_id']}: its answers graded one by one give pass@1 "
                        f"{sum(correct) / len(correct):.4g}, lm-eval logged {logged:.4g} (a cell cached by another "
                        f"grading): rerun the evaluate stage with force=true")
    return correct


def attempt_records(samples: list[dict], task: str, tokenizer, think_end: str | None,
                    ask: bool = True) -> pd.DataFrame:
    """One row per (problem, answer) of a cell's logged `samples` of `task`: COLUMNS and the problem's maj@k."""
    grade, rows = task_grading(task), []
    for sample in samples:
        outputs = texts(sample["resps"])
        correct = graded(sample, grade, ask)
        if len(outputs) != len(correct):
            raise UserError(f"problem {sample['doc_id']}: {len(outputs)} answers generated but {len(correct)} graded "
                            f"(an answer filter other than take_first_k): rerun the evaluate stage with force=true")
        votes = {k: float(v) for k, v in sample.items() if MAJ.match(k)}
        rows += [{"doc_id": int(sample["doc_id"]), "attempt": i, "correct": ok,
                  "think_tokens": token_count(tokenizer, thinking_text(output, think_end)), **votes}
                 for i, (output, ok) in enumerate(zip(outputs, correct, strict=True))]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *sorted({k for r in rows for k in r} - set(COLUMNS))])
    return frame.astype({"doc_id": "int64", "attempt": "int64", "correct": "float64", "think_tokens": "int64"})


def write_attempts(cell: Path, task: str, tokenizer, think_end: str | None) -> pd.DataFrame:
    """A just-evaluated cell's records, into `cell/attempts.parquet` (its LLM verdicts, if any, are still cached)."""
    frame = attempt_records(read_samples(cell, task), task, tokenizer, think_end)
    frame.to_parquet(cell / ATTEMPTS, index=False)
    return frame


def cell_attempts(cell: Path, task: str, tokenizer: Callable[[], object], think_end: str | None) -> pd.DataFrame:
    """A cell's records: its attempts.parquet, or (a cell cached before records were written) computed from its
    samples, left unwritten so that the cache stays as it was made. `tokenizer`: called only then."""
    if (cell / ATTEMPTS).is_file():
        return pd.read_parquet(cell / ATTEMPTS)
    log.info("evaluate: per-attempt records of %s from its samples", cell.name)
    return attempt_records(read_samples(cell, task), task, tokenizer(), think_end, ask=False)
