import csv

from reasoning_sae.train import history


def _write(path, rows, columns=("loss", "step")):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({"loss": loss, "step": step} for step, loss in rows)


def _read(path):
    with path.open(newline="") as f:
        return [(int(r["step"]), r["loss"]) for r in csv.DictReader(f)]


def test_killed_twice_each_step_once_in_order(tmp_path):
    """Run 1 logs steps 1..11 and is killed after its checkpoint of step 10; run 2 resumes there, logs 11 and 13 and
    is killed after its checkpoint of step 15; run 3 dies before logging; run 4 resumes at 15. A step's later row
    replaces its earlier one (the same numbers, since resuming is exact)."""
    current, segments = tmp_path / "csv" / "metrics.csv", tmp_path / history.SEGMENTS
    _write(current, [(s, f"a{s}") for s in (1, 3, 5, 7, 9, 11)])
    history.set_aside(current, segments, resume=True)
    assert not current.exists() and [p.name for p in segments.iterdir()] == ["0000.csv"]
    _write(current, [(s, f"b{s}") for s in (11, 13)])
    history.set_aside(current, segments, resume=True)
    history.set_aside(current, segments, resume=True)  # a resume that died before logging anything
    _write(current, [(s, f"c{s}") for s in (15, 17, 19)])
    out = tmp_path / "train_log.csv"
    assert history.write_merged(current, segments, out)
    assert _read(out) == [(1, "a1"), (3, "a3"), (5, "a5"), (7, "a7"), (9, "a9"), (11, "b11"), (13, "b13"),
                          (15, "c15"), (17, "c17"), (19, "c19")]


def test_a_fresh_start_drops_an_earlier_runs_rows(tmp_path):
    current, segments = tmp_path / "csv" / "metrics.csv", tmp_path / history.SEGMENTS
    _write(segments / "0000.csv", [(1, "old")])
    history.set_aside(current, segments, resume=False)
    _write(current, [(1, "new"), (3, "new")])
    history.write_merged(current, segments, tmp_path / "log.csv")
    assert _read(tmp_path / "log.csv") == [(1, "new"), (3, "new")]


def test_columns_are_the_union_and_rows_of_one_step_are_one_row(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _write(a, [(1, "x")])
    b.write_text("eval,lr,step\n,0.1,3\n7,,3\n,0.2,5\n")
    columns, rows = history.merge([a, b])
    assert columns == ["eval", "loss", "lr", "step"]
    assert rows == [{"loss": "x", "step": "1"}, {"lr": "0.1", "eval": "7", "step": "3"}, {"lr": "0.2", "step": "5"}]


def test_no_csv_logger_no_log(tmp_path):
    assert not history.write_merged(tmp_path / "metrics.csv", tmp_path / "segs", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
