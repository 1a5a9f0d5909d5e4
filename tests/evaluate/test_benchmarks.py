import json
import random

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
from tests.conftest import shared_data


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


def test_task_config_rejects_bad_input():
    with pytest.raises(UserError, match="unknown benchmark task 'math-500': use one of .*math500"):
        task_config("math-500")
    with pytest.raises(UserError, match="repeats must be >= 1"):
        task_config("math500", repeats=0)
