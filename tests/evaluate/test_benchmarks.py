import json
import random
from collections import Counter

import datasets
import pytest

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.answers import score_samples
from reasoning_sae.evaluate.benchmarks import (
    BENCHMARKS,
    MATH_PROMPT,
    demo_problems,
    load_benchmark,
    load_local,
    shuffle_choices,
    task_config,
)
from tests.helpers import shared_data


def test_demo_benchmark_is_deterministic_in_the_math500_schema():
    rows = demo_problems(40, seed=3)
    assert rows == demo_problems(40, seed=3)
    assert rows != demo_problems(40, seed=4)
    assert len({r["unique_id"] for r in rows}) == 40
    assert {"problem", "answer", "solution", "unique_id"} <= set(rows[0])
    assert all(r["answer"].isdigit() for r in rows)
    assert len({r["problem"].split()[0] for r in rows}) > 2  # a mix of templates


def test_demo_gold_solutions_all_score_correct():
    rows = demo_problems(200)
    scores = [score_samples([r["solution"]], r["answer"]).pass_at_1 for r in rows]
    assert sum(scores) == len(rows)
    assert all(score_samples([f"\\boxed{{{int(r['answer']) + 1}}}"], r["answer"]).pass_at_1 == 0 for r in rows)


def test_demo_prompt():
    assert MATH_PROMPT.format(problem="What is 1 + 2?") == (
        "Please reason step by step, and put your final answer within \\boxed{}.\nProblem: What is 1 + 2?\nAnswer:"
    )


def test_local_copies_load_in_the_hub_schemas():
    math = load_local("math500", shared_data("math500/test.jsonl"))
    aime = load_local("aime24_nofigures", shared_data("aime24/test.jsonl"))
    gpqa = load_local("gpqa_diamond_openai", shared_data("gpqa_diamond/gpqa_diamond.csv"))
    assert (len(math), len(aime), len(gpqa)) == (500, 30, 198)
    assert "023" in aime["answer"]  # zero padding kept: answers stay strings
    assert "\n" in "".join(gpqa["Question"])  # quoted newlines survive the CSV parser


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_file_missing_a_field_is_a_one_line_user_error(tmp_path, suffix):
    rows = [{"problem": "What is 1 + 1?", "answer": "2"}, {"problem": "What is 2 + 2?"}]
    path = tmp_path / f"bench{suffix}"
    path.write_text("\n".join(json.dumps(r) for r in rows) if suffix == ".jsonl" else json.dumps(rows))
    with pytest.raises(UserError) as err:
        load_local("math500", path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and "'answer'" in message and "HuggingFaceH4/MATH-500 schema" in message


def test_gpqa_csv_missing_a_column(tmp_path):
    path = tmp_path / "gpqa.csv"
    path.write_text("Question,Correct Answer\nq,a\n")
    with pytest.raises(UserError, match="lacks field 'Incorrect Answer 1' needed by gpqa_diamond_openai"):
        load_local("gpqa_diamond_openai", path)


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_local("math500", tmp_path / "absent.jsonl")
    (tmp_path / "b.txt").write_text("x")
    with pytest.raises(UserError, match="use a .jsonl, .json or .csv"):
        load_local("math500", tmp_path / "b.txt")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(UserError, match="no rows"):
        load_local("math500", tmp_path / "empty.jsonl")


def test_offline_hub_download_names_the_local_path_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="local_path"):
        load_benchmark("math500")


def test_load_benchmark_returns_the_evaluated_split():
    demo = load_benchmark("reasoning_demo", demo_size="7", demo_seed=1, version=1.0, pretrained="ignored")
    assert list(demo) == ["test"] and len(demo["test"]) == 7
    aime = load_benchmark("aime24_nofigures", local_path=str(shared_data("aime24/test.jsonl")))
    assert list(aime) == [BENCHMARKS["aime24_nofigures"].split] == ["train"]


def test_gpqa_shuffle_is_seeded_like_simple_evals():
    rows = datasets.Dataset.from_list([
        {"Question": f"q{i}", "Correct Answer": "right", **{f"Incorrect Answer {j}": f"wrong{j}" for j in (1, 2, 3)}}
        for i in range(40)
    ])
    shuffled = shuffle_choices(rows)
    assert shuffled["answer"] == shuffle_choices(rows)["answer"]
    rng = random.Random(0)  # simple-evals: one rng.sample(range(4), 4) per row, options [correct, incorrect 1..3]
    for row in shuffled:
        order = rng.sample(range(4), 4)
        assert [row[f"choice{k}"] for k in (1, 2, 3, 4)] == [["right", "wrong1", "wrong2", "wrong3"][i] for i in order]
        assert row["choice" + str("ABCD".index(row["answer"]) + 1)] == "right"
    assert len(set(shuffled["answer"])) == 4


def test_task_config_overrides(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"problem": "p", "answer": "1"}))
    cfg = task_config("math500", local_path=path, max_gen_toks=256, repeats=4)
    assert cfg["task"] == "math500" and callable(cfg["process_results"])
    assert cfg["dataset_kwargs"] == {"local_path": str(path.resolve())}
    assert cfg["generation_kwargs"]["max_gen_toks"] == 256 and cfg["generation_kwargs"]["temperature"] == 0.6
    assert cfg["repeats"] == 4
    assert cfg["filter_list"] == [{"name": "none", "filter": [{"function": "take_first_k", "k": 4}]}]
    assert [m["metric"] for m in cfg["metric_list"]] == ["pass@1", "maj@1", "maj@2", "maj@4"]
    plain = task_config("math500")
    assert plain["dataset_kwargs"] is None and plain["repeats"] == 1
    assert plain["generation_kwargs"]["max_gen_toks"] == 32768
    assert task_config("reasoning_demo", demo_size=5)["dataset_kwargs"] == {"demo_size": 5}
    assert "gen_prefix" not in plain and task_config("math500", response_prefix="<think>\n")["gen_prefix"] == "<think>\n"
    assert task_config("reasoning_demo", response_prefix="<think>\n")["gen_prefix"] == "<think>\n{{opening}}"


def test_demo_answers_open_like_the_demo_corpus_traces():
    rows = demo_problems(30, seed=0)
    assert all(r["opening"].startswith(("Okay", "Alright", "First")) for r in rows)
    assert sum("Tom" in r["opening"] for r in rows) == sum("Tom" in r["problem"] for r in rows) > 0
    assert [r["problem"] for r in rows] == [r["problem"] for r in demo_problems(30, seed=0)]


def test_task_config_rejects_bad_input():
    with pytest.raises(UserError, match="unknown benchmark task 'math-500': use one of .*math500"):
        task_config("math-500")
    with pytest.raises(UserError, match="repeats must be >= 1"):
        task_config("math500", repeats=0)


def simple_evals_examples(csv_path, n_repeats: int = 4) -> list[dict]:
    """OpenAI simple-evals' GPQAEval.__init__ (gpqa_eval.py, openai/simple-evals @ ee3b031), with its CSV read from
    the local copy instead of its URL: one permutation per example and repeat, drawn from random.Random(0)."""
    import pandas

    df = pandas.read_csv(csv_path)
    examples = [row.to_dict() for _, row in df.iterrows()]
    rng = random.Random(0)
    examples = examples * n_repeats
    return [example | {"permutation": rng.sample(range(4), 4)} for example in examples]


def released_process_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    """The released task's process_docs (AIRI-Institute/SAE-Reasoning @ 2cbfbff,
    evaluation/lm-evaluation-harness/lm_eval/tasks/gpqa/openai/utils.py), verbatim: Python's global random."""
    import re

    def preprocess(text):
        if text is None:
            return " "
        text = text.strip()
        text = text.replace(" [title]", ". ")
        text = re.sub("\\[.*?\\]", "", text)
        text = text.replace("  ", " ")
        return text

    def _process_doc(doc):
        choices = [
            preprocess(doc["Incorrect Answer 1"]),
            preprocess(doc["Incorrect Answer 2"]),
            preprocess(doc["Incorrect Answer 3"]),
            preprocess(doc["Correct Answer"]),
        ]

        random.shuffle(choices)
        correct_answer_index = choices.index(preprocess(doc["Correct Answer"]))

        out_doc = {
            "choice1": choices[0],
            "choice2": choices[1],
            "choice3": choices[2],
            "choice4": choices[3],
            "choices": [choices[0], choices[1], choices[2], choices[3]],
            "answer": f"{chr(65 + correct_answer_index)}",
        }
        return out_doc

    return dataset.map(_process_doc, load_from_cache_file=False)


def _layout(rows) -> list[tuple[list[str], str]]:
    return [([row[f"choice{i}"] for i in (1, 2, 3, 4)], row["answer"]) for row in rows]


def test_gpqa_simple_evals_order_is_simple_evals_on_the_real_copy():
    path = shared_data("gpqa_diamond/gpqa_diamond.csv")
    ours = load_benchmark("gpqa_diamond_openai", local_path=str(path))["train"]
    assert ours.to_list() == load_benchmark("gpqa_diamond_openai", local_path=str(path), gpqa_shuffle="simple_evals",
                                            gpqa_seed=0)["train"].to_list()  # the default
    examples = simple_evals_examples(path)
    assert len(ours) == 198 and len(examples) == 4 * 198
    for row, example in zip(ours, examples[:198]):  # simple-evals' first repeat; lm-eval's repeats share one prompt
        assert row["Question"] == example["Question"]
        options = [example["Correct Answer"], example["Incorrect Answer 1"], example["Incorrect Answer 2"],
                   example["Incorrect Answer 3"]]
        choices = [options[i] for i in example["permutation"]]
        assert [row[f"choice{i}"] for i in (1, 2, 3, 4)] == choices
        assert row["answer"] == "ABCD"[choices.index(example["Correct Answer"])]  # simple-evals' correct letter
        assert row[f"choice{'ABCD'.index(row['answer']) + 1}"] == row["Correct Answer"]
    assert sorted(Counter(ours["answer"]).values()) == [47, 47, 48, 56]  # every letter used, none dominant


def test_gpqa_released_order_is_the_released_process_docs_after_lm_evals_seeding():
    path = shared_data("gpqa_diamond/gpqa_diamond.csv")
    raw = load_local("gpqa_diamond_openai", path)
    state = random.getstate()
    try:
        for seed in (0, 1234):
            random.seed(seed)  # lm-eval's simple_evaluate: random.seed(random_seed) before it builds the tasks
            reference = released_process_docs(raw)
            ours = shuffle_choices(raw, "released", seed)
            assert _layout(ours) == _layout(reference)
    finally:
        random.setstate(state)
    ours = load_benchmark("gpqa_diamond_openai", local_path=str(path), gpqa_shuffle="released")["train"]
    assert _layout(ours) == _layout(shuffle_choices(raw, "released", 0))
    from reasoning_sae.evaluate.benchmarks import released_preprocess

    for row in ours:  # the letter shows the (cleaned) correct option; in row 171 cleaning makes all four alike
        assert row[f"choice{'ABCD'.index(row['answer']) + 1}"] == released_preprocess(row["Correct Answer"])
    alike = [i for i, row in enumerate(ours) if len({row[f"choice{k}"] for k in (1, 2, 3, 4)}) == 1]
    assert alike == [171]
    assert _layout(ours) != _layout(shuffle_choices(raw))  # the two settings really differ


def test_gpqa_settings_are_checked_and_reach_only_gpqa_tasks(tmp_path):
    with pytest.raises(UserError, match=r"^unknown benchmark.gpqa_shuffle 'openai': use one of simple_evals, released"):
        task_config("math500", gpqa_shuffle="openai")
    cfg = task_config("gpqa_diamond_openai_maj4", grading="strict", gpqa_shuffle="released", gpqa_seed=1234)
    assert cfg["dataset_kwargs"] == {"grading": "strict", "gpqa_shuffle": "released", "gpqa_seed": 1234}
    cfg = task_config("math500", grading="strict", gpqa_shuffle="released", gpqa_seed=1234)
    assert cfg["dataset_kwargs"] == {"grading": "strict"}
    with pytest.raises(UserError, match="unknown benchmark.grading"):
        task_config("math500", grading="llm-judge")
    demo = load_benchmark("reasoning_demo", demo_size=3, grading="strict")["test"]
    assert json.loads(demo[0]["grading"]) == {"mode": "strict", "verifier": None}
