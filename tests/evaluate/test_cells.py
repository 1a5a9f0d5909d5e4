import pytest

from reasoning_sae import UserError
from reasoning_sae.evaluate.cells import Cell, cell_key, feature_sets, grid


def test_grid_is_baseline_plus_features_by_gammas_per_task_then_word_ban():
    cells = grid(["a", "b"], [12, "3+4"], [1.0, 2.0], baseline=True, ban_seeds=[0, 1])
    a = [c for c in cells if c.task == "a"]
    assert a[0] == Cell("a") and a[0].label == "baseline" and a[0].row == "No steering"
    assert Cell("a", (12,), 1.0) in a and Cell("a", (3, 4), 2.0) in a
    assert [c.ban for c in a[-3:]] == ["reason", "random-0", "random-1"]
    assert len(cells) == 2 * (1 + 4 + 3)
    assert Cell("a", (3, 4), 2.0).label == "f3+4_g2" and Cell("a", ban="random-1").label == "ban-random-1"
    assert grid(["a"], [], [2.0], baseline=False) == []


def test_feature_entries_must_be_ids():
    assert feature_sets([1, [2, 3], "4+5"]) == [(1,), (2, 3), (4, 5)]
    with pytest.raises(UserError, match="is not a feature id"):
        feature_sets(["wait"])


def test_cell_keys_change_with_anything_that_changes_the_result():
    cell = Cell("a", (1,), 2.0)
    assert cell_key(cell, {"seed": 1}) == cell_key(cell, {"seed": 1})
    assert cell_key(cell, {"seed": 1}) != cell_key(cell, {"seed": 2})
    assert cell_key(cell, {"seed": 1}) != cell_key(Cell("a", (1,), 3.0), {"seed": 1})
    assert cell_key(cell, {}).startswith("f1_g2-")


def test_later_fields_leave_old_keys_alone_and_name_their_rows():
    """A cell without a steering vector or budget forcing hashes as before those fields existed."""
    import hashlib
    import json

    context = {"model": "m", "seed": 0}
    old = {"task": "t", "features": [3], "gamma": 2.0, "ban": None}
    digest = hashlib.sha256(json.dumps({"cell": old, **context}, sort_keys=True).encode()).hexdigest()[:12]
    assert cell_key(Cell("t", (3,), 2.0), context) == f"f3_g2-{digest}"
    diffmean, forced = Cell("t", gamma=2.0, vector="diffmean"), Cell("t", force=96)
    assert (diffmean.label, diffmean.row) == ("diffmean_g2", "DiffMean γ=2")
    assert (forced.label, forced.row) == ("force-96", "Budget forcing")
    assert len({cell_key(c, context) for c in (diffmean, forced, Cell("t"))}) == 3
    cells = grid(["t"], [3], [2.0], True, [0], vectors=["diffmean"], force=96)
    assert [c.label for c in cells] == ["baseline", "f3_g2", "diffmean_g2", "force-96", "ban-reason", "ban-random-0"]
