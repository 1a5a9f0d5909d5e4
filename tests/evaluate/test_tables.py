from reasoning_sae.evaluate.cells import Cell
from reasoning_sae.evaluate.tables import results_frame, table1, table2


def _record(cell: Cell, acc: float, think: float) -> dict:
    return {"cell": cell._asdict(), "label": cell.label, "row": cell.row,
            "metrics": {cell.task: {"pass@1": acc, "maj@4": acc, "think_tokens": think,
                                    "reasoning_words_per_1k": 3.0, "n_docs": 10.0}}}


def test_tables_have_the_paper_layouts():
    records = [_record(Cell("math500"), 0.5, 100.0), _record(Cell("math500", (7,), 2.0), 0.6, 120.0),
               _record(Cell("math500", ban="reason"), 0.2, 80.0), _record(Cell("math500", ban="random-0"), 0.4, 90.0),
               _record(Cell("math500", ban="random-1"), 0.5, 110.0)]
    frame = results_frame(records)
    assert len(frame) == 5 * 5 and set(frame["metric"]) >= {"pass@1", "think_tokens"}
    t1 = table1(frame)
    assert "| No steering | 50.0 | 50.0 | 100.0 | 3.0 |" in t1 and "| #7 γ=2 | 60.0 |" in t1
    assert t1.index("maj@4") < t1.index("pass@1")  # maj@k first: v2 Table 1 reports maj@4
    t2 = table2(frame)
    assert "| Default (none banned) | 50.0 |" in t2 and "| Reason (ban R) | 20.0 |" in t2
    assert "| Random (ban random words, mean of 2) | 45.0 | 45.0 | 100.0 |" in t2


def test_a_diffmean_row_is_in_table1_and_not_in_table2s_default():
    records = [_record(Cell("math500"), 0.5, 100.0), _record(Cell("math500", gamma=2.0, vector="diffmean"), 0.1, 40.0),
               _record(Cell("math500", ban="reason"), 0.2, 80.0)]
    frame = results_frame(records)
    assert "| DiffMean γ=2 | 10.0 | 10.0 | 40.0 |" in table1(frame)
    assert "| Default (none banned) | 50.0 | 50.0 | 100.0 |" in table2(frame)  # the baseline's alone, not averaged
