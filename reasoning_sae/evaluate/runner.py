"""Run one evaluation cell through lm-eval's `simple_evaluate` and write lm-eval's own result and sample files,
plus `metrics.json`: lm-eval's metrics (pass@1, maj@k) with thinking length and reasoning-word rates added, and
`attempts.parquet`: each answer's correctness and thinking length (evaluate/attempts.py)."""

import functools
import json
from pathlib import Path

from reasoning_sae.artifacts import write_json
from reasoning_sae.evaluate.attempts import write_attempts
from reasoning_sae.evaluate.cells import Cell
from reasoning_sae.evaluate.metrics import generation_metrics


def flat_metrics(task_results: dict) -> dict[str, float]:
    """lm-eval's `metric,filter` keys as `metric` (filter `none`) or `metric/filter`; numbers only, no stderr."""
    flat = {}
    for key, value in task_results.items():
        metric, _, filt = key.partition(",")
        if "_stderr" in metric or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        flat[metric if filt in ("", "none") else f"{metric}/{filt}"] = float(value)
    return flat


def sample_outputs(samples: list[dict]) -> list[str]:
    """Every generated text of a task's samples (all repeats), before lm-eval's answer filters."""
    return [text for sample in samples for resp in sample["resps"] for text in (resp if isinstance(resp, list) else [resp])]


def cell_metrics(results: dict, tokenizer, vocabulary, think_end: str | None) -> dict[str, dict[str, float]]:
    """{task: metrics} for one simple_evaluate result (with samples); thinking ends at `think_end`."""
    metrics = {}
    for task, task_results in results["results"].items():
        samples = results.get("samples", {}).get(task, [])
        metrics[task] = {**flat_metrics(task_results), "n_docs": float(len(samples)),
                         **generation_metrics(tokenizer, sample_outputs(samples), vocabulary, think_end)}
    return metrics


def forcing_counts(forces: list[int]) -> dict[str, int]:
    """What budget forcing did in one cell: generated samples, those forced at least once, and all forces."""
    return {"samples": len(forces), "forced_samples": sum(f > 0 for f in forces), "forces": sum(forces)}


def save_cell(results: dict, metrics: dict, cell: Cell, out: Path, forcing: dict | None = None) -> None:
    """lm-eval's results_*.json and samples_*.jsonl (its EvaluationTracker), and our metrics.json (with the budget
    forcing counts of a forcing cell)."""
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(out / "lm_eval"))
    tracker.general_config_tracker.model_name_sanitized = cell.label
    samples = results.pop("samples", {})
    tracker.save_results_aggregated(results=results, samples=samples)
    for task, task_samples in samples.items():
        tracker.save_results_samples(task_name=task, samples=task_samples)
    write_json(out / "metrics.json", {"cell": cell._asdict(), "label": cell.label, "row": cell.row,
                                      "metrics": metrics, **({"budget_forcing": forcing} if forcing else {})})


def load_cell(path: Path) -> dict:
    return json.loads((path / "metrics.json").read_text())


@functools.cache
def task_manager(include_path: str):
    """lm-eval's TaskManager indexes every task YAML it ships (7-8 s on 2 cores): built once per process, not per
    cell."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path)


def evaluate_cell(model, cell: Cell, task_spec, vocabulary, out: Path, *, limit, seed: int, batch_size,
                  apply_chat_template: bool = True) -> dict:
    """simple_evaluate `model` (an lm-eval LM of lm_eval.model or .vllm: it has `think_end`) on one task and save
    everything under `out`."""
    from lm_eval import simple_evaluate

    from reasoning_sae.lm_eval import task_dir

    forced_before = len(getattr(model, "forces", ()))  # the engine appends one count per generated sample
    results = simple_evaluate(
        model=model, tasks=[task_spec], limit=limit, log_samples=True, apply_chat_template=apply_chat_template,
        task_manager=task_manager(str(task_dir())), batch_size=batch_size, random_seed=seed,
        numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed, bootstrap_iters=0)
    metrics = cell_metrics(results, model.tokenizer, vocabulary, model.think_end)
    forcing = forcing_counts(model.forces[forced_before:]) if cell.force is not None else None
    save_cell(results, metrics, cell, out, forcing)
    write_attempts(out, cell.task, model.tokenizer, model.think_end)
    return metrics
