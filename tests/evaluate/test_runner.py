"""evaluate/runner.py: what one cell records beside lm-eval's files."""

import lm_eval

from reasoning_sae.evaluate import runner
from reasoning_sae.evaluate.cells import Cell


def test_forcing_counts():
    assert runner.forcing_counts([0, 2, 1, 0]) == {"samples": 4, "forced_samples": 2, "forces": 3}
    assert runner.forcing_counts([]) == {"samples": 0, "forced_samples": 0, "forces": 0}


class FakeModel:
    tokenizer, think_end = None, "</think>"

    def __init__(self, earlier: list[int]):
        self.forces = list(earlier)  # counts of the cells this engine generated before


def run_cell(monkeypatch, tmp_path, cell: Cell, model: FakeModel, new_forces: list[int]) -> dict:
    saved = {}

    def fake_evaluate(model, **_):
        model.forces += new_forces
        return {"results": {}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake_evaluate)
    monkeypatch.setattr(runner, "cell_metrics", lambda *a: {})
    monkeypatch.setattr(runner, "save_cell", lambda results, metrics, cell, out, forcing=None: saved.update(
        forcing=forcing))
    monkeypatch.setattr(runner, "write_attempts", lambda *a: None)
    monkeypatch.setattr(runner, "task_manager", lambda path: None)
    runner.evaluate_cell(model, cell, "task", None, tmp_path, limit=None, seed=0, batch_size=1)
    return saved["forcing"]


def test_a_forcing_cell_records_only_its_own_samples(monkeypatch, tmp_path):
    model = FakeModel(earlier=[3, 3])
    forcing = run_cell(monkeypatch, tmp_path, Cell("reasoning_demo", force=96), model, [0, 1, 2, 0, 0])
    assert forcing == {"samples": 5, "forced_samples": 2, "forces": 3}


def test_other_cells_record_no_forcing(monkeypatch, tmp_path):
    assert run_cell(monkeypatch, tmp_path, Cell("reasoning_demo"), FakeModel([]), []) is None
