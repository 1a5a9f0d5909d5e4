"""Our lm-eval tasks as lm-eval itself loads them (TaskManager + our include path), run on local benchmark copies."""

import json

import lm_eval
import pytest
from lm_eval.api.model import LM
from lm_eval.tasks import TaskManager

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.benchmarks import GPQA_PROMPT, MATH_PROMPT, task_config
from reasoning_sae.lm_eval import task_dir
from tests.helpers import shared_data

TASKS = ("aime24_nofigures", "math500", "gpqa_diamond_openai", "reasoning_demo")


@pytest.fixture(scope="module")
def manager() -> TaskManager:
    return TaskManager(include_path=str(task_dir()), include_defaults=False)


def load_task(manager: TaskManager, name: str, local_path=None, **kwargs):
    """A task built by lm-eval from our yaml with a local dataset copy."""
    return manager.load([task_config(name, local_path=local_path, **kwargs)])["tasks"][name]


def rate(task, docs, response) -> float:
    """Mean pass@1 of one response per doc, scored by the task's own process_results."""
    return sum(task.process_results(d, [response(d)])["pass@1"] for d in docs) / len(docs)


def test_task_manager_lists_our_tasks():
    manager = TaskManager(include_path=str(task_dir()))  # with lm-eval's own tasks, as `--include_path` does
    for name in TASKS + tuple(f"{t}_maj4" for t in TASKS):
        assert name in manager.all_subtasks
        assert manager.task_index[name].yaml_path.parent == task_dir()


def test_math500_gold_solutions_score_correct_and_other_answers_wrong():
    path = shared_data("math500/test.jsonl")
    # the metadata route: what `lm_eval --metadata '{"local_path": ...}'` does
    task = TaskManager(include_path=str(task_dir()), include_defaults=False, metadata={"local_path": str(path)})
    task = task.load("math500")["tasks"]["math500"]
    docs = list(task.eval_docs)
    assert len(docs) == 500
    assert task.doc_to_text(docs[0]) == MATH_PROMPT.format(problem=docs[0]["problem"])
    gold = rate(task, docs, lambda d: d["solution"])
    print(f"MATH-500 gold solutions scored correct: {gold:.1%}")
    assert gold >= 0.99

    def wrong(i: int, doc: dict) -> str:
        if doc["answer"].isdigit():
            return f"\\boxed{{{int(doc['answer']) + 1}}}"
        other = next(d["answer"] for d in docs[i + 1 :] + docs if d["answer"].strip() != doc["answer"].strip())
        return f"\\boxed{{{other}}}"

    false_positive = sum(task.process_results(d, [wrong(i, d)])["pass@1"] for i, d in enumerate(docs)) / len(docs)
    print(f"MATH-500 wrong answers scored correct: {false_positive:.1%}")
    assert false_positive <= 0.01


def test_aime_gold_answers_score_correct(manager):
    task = load_task(manager, "aime24_nofigures", shared_data("aime24/test.jsonl"))
    docs = list(task.eval_docs)
    assert len(docs) == 30
    boxed = rate(task, docs, lambda d: f"... so the answer is $\\boxed{{{int(d['answer'])}}}$.")
    solutions = rate(task, docs, lambda d: d["solution"])  # AoPS-wiki solutions: one ends without a box
    print(f"AIME gold answers boxed scored correct: {boxed:.1%}; full AoPS solutions: {solutions:.1%}")
    assert boxed == 1.0 and solutions >= 0.9
    assert rate(task, docs, lambda d: f"\\boxed{{{int(d['answer']) + 1}}}") == 0.0
    assert rate(task, docs, lambda d: "I could not solve it.") == 0.0


def test_gpqa_correct_letter_scores_and_others_do_not(manager):
    path = shared_data("gpqa_diamond/gpqa_diamond.csv")
    task = load_task(manager, "gpqa_diamond_openai", path)
    docs = list(task.eval_docs)
    assert len(docs) == 198
    assert len({d["answer"] for d in docs}) == 4
    for doc in docs:
        choices = [doc[f"choice{i}"] for i in (1, 2, 3, 4)]
        assert choices["ABCD".index(doc["answer"])] == doc["Correct Answer"]
        assert task.doc_to_text(doc) == GPQA_PROMPT.format(**doc)
        for letter in "ABCD":
            assert task.process_results(doc, [f"Thinking...\nAnswer: {letter}"])["pass@1"] == (letter == doc["answer"])
    assert rate(task, docs, lambda d: f"\\boxed{{{d['answer']}}}") == 1.0
    again = [d["answer"] for d in load_task(manager, "gpqa_diamond_openai", path).eval_docs]
    assert again == [d["answer"] for d in docs]


def test_demo_task_needs_no_files_and_its_gold_solutions_score_correct(manager):
    task = load_task(manager, "reasoning_demo", demo_size=30)
    docs = list(task.eval_docs)
    assert len(docs) == 30
    assert task.config.generation_kwargs["max_gen_toks"] == 256
    assert rate(task, docs, lambda d: d["solution"]) == 1.0
    assert rate(task, docs, lambda d: f"so the answer is {d['answer']}.") == 1.0  # the demo's last-number fallback
    assert rate(task, docs, lambda d: f"\\boxed{{{int(d['answer']) + 1}}}") == 0.0


def test_a_local_file_missing_a_field_fails_with_a_user_error(manager, tmp_path):
    path = tmp_path / "aime.jsonl"
    path.write_text(json.dumps({"problem": "p", "solution": "s"}) + "\n")
    with pytest.raises(UserError, match=f"{path} lacks field 'answer' needed by aime24_nofigures"):
        load_task(manager, "aime24_nofigures", path)


class CannedLM(LM):
    """Per prompt, the i-th request gets: wrong, right ("Answer:"), right (boxed), wrong; records generation kwargs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}
        self.gen_kwargs: list[dict] = []

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError

    def generate_until(self, requests) -> list[str]:
        out = []
        for request in requests:
            context, gen_kwargs = request.args
            self.gen_kwargs.append(gen_kwargs)
            i = self.calls[context] = self.calls.get(context, -1) + 1
            answer = request.doc["answer"]
            out.append(["\\boxed{-1}", f"Answer: {answer}", f"\\boxed{{{answer}}}", "\\boxed{-2}"][i % 4])
        return out


def test_simple_evaluate_reports_pass_at_1_and_maj_at_k_on_a_local_copy(manager):
    lm = CannedLM()
    path = shared_data("math500/test.jsonl")
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=[task_config("math500", local_path=path, repeats=4, max_gen_toks=256)],
        task_manager=manager, limit=3, bootstrap_iters=0, log_samples=False,
    )["results"]["math500"]
    # samples per problem: wrong, right, right, wrong; maj@2 ties 1-1 and goes to the earliest (wrong)
    assert results["pass@1,none"] == 0.5
    assert (results["maj@1,none"], results["maj@2,none"], results["maj@4,none"]) == (0.0, 0.0, 1.0)
    assert len(lm.gen_kwargs) == 12 and lm.gen_kwargs[0]["max_gen_toks"] == 256
    assert lm.gen_kwargs[0]["until"] == ["Problem:", "<｜end▁of▁sentence｜>"] and lm.gen_kwargs[0]["do_sample"]


def test_the_maj4_yaml_variant_runs_by_name(manager):
    results = lm_eval.simple_evaluate(
        model=CannedLM(), tasks=["reasoning_demo_maj4"], task_manager=manager, limit=5, bootstrap_iters=0
    )["results"]["reasoning_demo_maj4"]
    assert results["pass@1,none"] == 0.5 and results["maj@4,none"] == 1.0


class DfracLM(CannedLM):
    """Answers every problem with its gold answer boxed, \\frac written \\dfrac (equal, but not the same string)."""

    def generate_until(self, requests) -> list[str]:
        return [f"\\boxed{{{r.doc['answer'].replace('frac', 'dfrac')}}}" for r in requests]


def test_the_grading_setting_reaches_process_results_in_simple_evaluate(manager):
    path = shared_data("math500/test.jsonl")
    rates = {}
    for grading in ("math_verify", "strict"):
        results = lm_eval.simple_evaluate(
            model=DfracLM(), tasks=[task_config("math500", local_path=path, grading=grading)], task_manager=manager,
            limit=3, bootstrap_iters=0, log_samples=True)
        rates[grading] = results["results"]["math500"]["pass@1,none"]
        logged = results["samples"]["math500"][0]["doc"]["grading"]
        assert json.loads(logged)["mode"] == grading  # the samples record how they were graded
    assert rates == {"math_verify": 1.0, "strict": pytest.approx(1 / 3)}  # 2 of the 3 golds contain \frac


def test_grading_and_gpqa_order_through_lm_eval_metadata():
    """What `lm_eval --metadata '{"local_path": ..., "grading": "strict", "gpqa_shuffle": "released"}'` does."""
    aime = shared_data("aime24/test.jsonl")
    gpqa = shared_data("gpqa_diamond/gpqa_diamond.csv")
    tasks = {}
    for metadata in ({}, {"grading": "strict", "gpqa_shuffle": "released"}):
        for name, path in (("aime24_nofigures", aime), ("gpqa_diamond_openai", gpqa)):
            loader = TaskManager(include_path=str(task_dir()), include_defaults=False,
                                 metadata={"local_path": str(path), **metadata})
            tasks[name, bool(metadata)] = loader.load(name)["tasks"][name]
    for strict, expected in ((True, 0.0), (False, 1.0)):  # the released pattern keeps the newline; math_verify does not
        task = tasks["aime24_nofigures", strict]
        doc = next(d for d in task.eval_docs if d["answer"] == "023")
        assert task.process_results(doc, ["Answer: 23\n"])["pass@1"] == expected
    from reasoning_sae.evaluate.benchmarks import load_local, shuffle_choices

    raw = load_local("gpqa_diamond_openai", gpqa)
    for released, shuffle in ((False, "simple_evals"), (True, "released")):
        docs = list(tasks["gpqa_diamond_openai", released].eval_docs)
        assert [d["answer"] for d in docs] == shuffle_choices(raw, shuffle)["answer"]
        assert [d["choice1"] for d in docs] == shuffle_choices(raw, shuffle)["choice1"]
