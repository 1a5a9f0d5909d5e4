"""Per-attempt records (evaluate/attempts.py): each sampled answer graded alone by its task's own grading, thinking
counted as the cell metrics count it, and cells cached before the records existed read from their samples."""

import json

import pandas as pd
import pytest

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate import attempts
from reasoning_sae.evaluate.attempts import ATTEMPTS, attempt_records, cell_attempts, write_attempts
from reasoning_sae.evaluate.benchmarks import demo_problems
from reasoning_sae.evaluate.grading import FIELD, Grading
from reasoning_sae.evaluate.verifier import VerifierConfig


def sample(doc_id: int, doc: dict, answers: list[str], pass_at_1: float, **votes: float) -> dict:
    """A sample as lm-eval logs it with our take_first_k filter: one request, all its repeats."""
    return {"doc_id": doc_id, "doc": doc, "resps": [answers], "filtered_resps": [answers], "pass@1": pass_at_1,
            **votes}


def demo_doc(i: int = 0) -> dict:
    return demo_problems(4)[i]  # "There are 14 birds on a tree and 14 more ...": 28


def test_each_answer_is_graded_alone_by_the_tasks_own_grading(smollm2_tokenizer):
    answers = ["Wait, 14 + 14 = 28.</think> The answer is \\boxed{28}.", "Hmm, so 27.</think> \\boxed{27}",
               "No tag, just 28"]  # the demo task's lenient grading: the last number counts
    frame = attempt_records([sample(3, demo_doc(), answers, 2 / 3, **{"maj@1": 1.0, "maj@3": 1.0})],
                            "reasoning_demo", smollm2_tokenizer, "</think>")
    assert frame["correct"].tolist() == [1.0, 0.0, 1.0] and frame["attempt"].tolist() == [0, 1, 2]
    assert (frame["doc_id"] == 3).all() and (frame["maj@3"] == 1.0).all()
    thinking = ["Wait, 14 + 14 = 28.", "Hmm, so 27.", "No tag, just 28"]
    assert frame["think_tokens"].tolist() == [len(smollm2_tokenizer.encode(t, add_special_tokens=False))
                                              for t in thinking]


def test_the_grading_mode_a_document_carries_is_the_one_applied(smollm2_tokenizer):
    doc = {"problem": "What is 1/2 as a fraction?", "answer": "\\frac{1}{2}"}
    answers = ["\\boxed{0.5}", "\\boxed{\\frac{1}{2}}"]
    verified = attempt_records([sample(0, doc, answers, 1.0)], "math500", smollm2_tokenizer, "</think>")
    assert verified["correct"].tolist() == [1.0, 1.0]  # math-verify: 0.5 equals 1/2
    strict = {**doc, FIELD: Grading("strict").to_json()}  # the released code's string equality
    assert attempt_records([sample(0, strict, answers, 0.5)], "math500", smollm2_tokenizer,
                           "</think>")["correct"].tolist() == [0.0, 1.0]


def test_a_logged_pass_at_1_the_answers_do_not_give_is_an_error(smollm2_tokenizer):
    with pytest.raises(UserError, match=r"^problem 5: its answers graded one by one give pass@1 0.5, lm-eval logged "
                                        r"1 .*rerun the evaluate stage with force=true$"):
        attempt_records([sample(5, demo_doc(), ["\\boxed{28}", "\\boxed{1}"], 1.0)], "reasoning_demo",
                        smollm2_tokenizer, None)


def test_an_llm_graded_cell_cached_earlier_asks_no_verifier_again(smollm2_tokenizer, monkeypatch):
    verifier = VerifierConfig(base_url="http://127.0.0.1:9", api_key_env=None)
    doc = {**demo_doc(), FIELD: Grading("llm", verifier).to_json()}
    def never(doc, results):
        pytest.fail("graded again")

    monkeypatch.setattr(attempts, "task_grading", lambda task: never)
    frame = attempt_records([sample(0, doc, ["a", "b", "c", "d"], 0.5)], "reasoning_demo", smollm2_tokenizer, None,
                            ask=False)
    assert frame["correct"].tolist() == [1.0, 1.0, 0.0, 0.0]  # k * pass@1 right: the interval sees the same set


def write_samples(cell, task: str, rows: list[dict]) -> None:
    folder = cell / "lm_eval" / "baseline"
    folder.mkdir(parents=True)
    (folder / f"samples_{task}_2026-01-01.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_cell_without_records_gets_them_from_its_samples(tmp_path, smollm2_tokenizer):
    rows = [sample(1, demo_doc(1), ["x</think>", "y y</think>"], 0.0, **{"maj@2": 0.0}),
            sample(0, demo_doc(0), ["28", "\\boxed{28}"], 1.0, **{"maj@2": 1.0})]
    cell = tmp_path / "baseline-abc"
    write_samples(cell, "reasoning_demo", rows)
    calls = []

    def tokenizer():
        calls.append(1)
        return smollm2_tokenizer

    old = cell_attempts(cell, "reasoning_demo", tokenizer, "</think>")
    assert calls == [1] and not (cell / ATTEMPTS).exists()  # computed, the cached cell left as it was
    assert old["doc_id"].tolist() == [0, 0, 1, 1] and old["correct"].tolist() == [1.0, 1.0, 0.0, 0.0]
    written = write_attempts(cell, "reasoning_demo", smollm2_tokenizer, "</think>")
    pd.testing.assert_frame_equal(written, old)
    pd.testing.assert_frame_equal(cell_attempts(cell, "reasoning_demo", tokenizer, "</think>"), old)
    assert calls == [1]  # read back: no tokenizer needed
    with pytest.raises(UserError, match="no lm-eval samples of reasoning_demo: delete the cell folder"):
        cell_attempts(tmp_path / "empty", "reasoning_demo", tokenizer, None)
