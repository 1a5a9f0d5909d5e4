"""The evaluate stage with benchmark.grading / verifier / gpqa_shuffle / gpqa_seed: settings checked before any model
loads, part of every cell's key (absent at their defaults), and passed into the lm-eval tasks."""

import json
from pathlib import Path

import pytest

from reasoning_sae import UserError
from reasoning_sae.stages import evaluate

TASKS = "benchmark.tasks=[reasoning_demo,gpqa_diamond_openai]"
SETTINGS = {
    "default": (),
    "math_verify": ("benchmark.grading=math_verify", "benchmark.gpqa_shuffle=simple_evals", "benchmark.gpqa_seed=0"),
    "strict": ("benchmark.grading=strict",),
    "llm": ("benchmark.grading=llm",),
    "llm_other_model": ("benchmark.grading=llm", "benchmark.verifier.model=other/model"),
    "llm_keyless_env": ("benchmark.grading=llm", "benchmark.verifier.api_key_env=null", "benchmark.verifier.retries=9"),
    "released": ("benchmark.gpqa_shuffle=released",),
    "seed": ("benchmark.gpqa_seed=1234",),
}


def test_grading_and_gpqa_order_key_the_cells(vocab_only, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-secret-value")
    monkeypatch.delenv("PROCESSOR", raising=False)
    configs = {name: vocab_only(TASKS, *overrides) for name, overrides in SETTINGS.items()}
    grid = evaluate.cells(configs["default"])
    assert {c.task for c in grid} == {"reasoning_demo", "gpqa_diamond_openai"}
    dirs, keys = {}, {}
    for name, cfg in configs.items():
        ctx = evaluate.Context(cfg, evaluate.inputs(cfg, grid), grid)
        dirs[name] = {cell: evaluate.cell_dir(cfg, ctx, cell) for cell in grid}
        keys[name] = {cell: ctx.key_context(cell) for cell in grid}
    for cell in grid:
        gpqa = cell.task == "gpqa_diamond_openai"
        assert dirs["math_verify"][cell] == dirs["default"][cell]  # defaults spelled out: the same cells
        assert not {"grading", "gpqa_order"} & set(keys["default"][cell])  # so cells from before keep their keys
        graded = [dirs[n][cell] for n in ("default", "strict", "llm", "llm_other_model")]
        assert len(set(graded)) == 4  # cells graded differently never reuse each other
        assert dirs["llm_keyless_env"][cell] == dirs["llm"][cell]  # where the key lives and retries change no verdict
        assert (dirs["released"][cell] != dirs["default"][cell]) is gpqa  # the order keys GPQA cells only
        assert (dirs["seed"][cell] != dirs["default"][cell]) is gpqa
        assert keys["llm"][cell]["grading"]["verifier"]["model"] == "meta-llama/llama-3.3-70b-instruct"
        assert "sk-secret-value" not in json.dumps(keys["llm"][cell], default=str)
    spec = evaluate.task_spec(configs["llm"], "gpqa_diamond_openai")
    assert spec["dataset_kwargs"]["grading"] == "llm" and "sk-secret-value" not in json.dumps(spec["dataset_kwargs"])


BAD = [
    (("benchmark.grading=llm",), r"^benchmark.grading=llm needs an API key: set \$OPENROUTER_API_KEY, or "
                                 r"benchmark.verifier.api_key_env=null for an endpoint without one$"),
    (("benchmark.grading=llm", "benchmark.verifier.api_key_env=MY_VERIFIER_KEY"), r"set \$MY_VERIFIER_KEY"),
    (("benchmark.grading=llm", "benchmark.verifier.base_url=null", "benchmark.verifier.api_key_env=null"),
     "needs an endpoint: set benchmark.verifier.base_url"),
    (("benchmark.grading=llm", "+benchmark.verifier.api_key=sk-oops"), r"unknown benchmark.verifier setting\(s\)"),
    (("benchmark.grading=exact",), "unknown benchmark.grading 'exact': use one of math_verify, strict, llm"),
    (("benchmark.gpqa_shuffle=random",), "unknown benchmark.gpqa_shuffle 'random': use one of simple_evals, released"),
    (("benchmark.gpqa_seed=zero",), r"benchmark.gpqa_seed='zero': give an integer"),
]


def test_bad_settings_fail_in_one_line_before_any_model_loads(vocab_only, monkeypatch):  # noqa: F811
    import reasoning_sae.models

    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.delenv("MY_VERIFIER_KEY", raising=False)

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the settings were checked")

    monkeypatch.setattr(reasoning_sae.models, "load_lm", no_model)
    for overrides, message in BAD:
        cfg = vocab_only(*overrides)
        with pytest.raises(UserError, match=message) as err:
            evaluate.run(cfg)
        assert "\n" not in str(err.value)
        assert not (Path(cfg.paths.artifacts) / "demo" / "evaluate").exists()
        assert not (Path(cfg.paths.artifacts) / "demo" / "evaluate-cells").exists()


def test_a_strict_run_grades_its_own_cells(vocab_only):  # noqa: F811
    base = ("steering.features=[]", "benchmark.word_ban.enabled=false")
    strict = vocab_only(*base, "benchmark.grading=strict")
    out = evaluate.run(strict)
    cells = sorted((Path(strict.paths.artifacts) / "demo" / "evaluate-cells").glob("*/*/metrics.json"))
    assert len(cells) == 1
    samples = next(cells[0].parent.glob("lm_eval/*/samples_*.jsonl")).read_text().splitlines()
    assert {json.loads(json.loads(line)["doc"]["grading"])["mode"] for line in samples} == {"strict"}
    assert (out / "results.csv").is_file()
    evaluate.run(vocab_only(*base))  # the default grading: a cell of its own
    assert len(list((Path(strict.paths.artifacts) / "demo" / "evaluate-cells").glob("*/*/metrics.json"))) == 2
