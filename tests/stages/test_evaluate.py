import json
import re
from pathlib import Path

import pandas as pd
import pytest

from reasoning_sae import UserError
from reasoning_sae.stages import corpus, evaluate, interpret, score, train, vocab
from tests.helpers import needs_vllm, random_sae, tiny

SMALL = ("score.top_k=2",)  # tiny() already makes the benchmark small


@pytest.fixture
def pipeline(compose, tiny_llama_dir):
    """corpus -> interpret on the tiny model; returns a composer of evaluate configs with extra overrides."""
    base = (*tiny(tiny_llama_dir), *SMALL)
    for stage in (corpus, train, vocab, score, interpret):
        stage.run(compose("interpret", base))
    return lambda *extra: compose("evaluate", (*base, *extra))


def _cells(cfg) -> list[Path]:
    return sorted((Path(cfg.paths.artifacts) / "demo" / "evaluate-cells").glob("*/*/metrics.json"))


def test_evaluate_writes_lm_eval_results_tables_and_reuses_cells(pipeline):
    cfg = pipeline()
    out = evaluate.run(cfg)
    frame = pd.read_csv(out / "results.csv")
    top = json.loads((Path(cfg.paths.artifacts) / "demo" / "score" / "top_features.json").read_text())["features"][0]
    assert set(frame["label"]) == {"baseline", f"f{top}_g2", "ban-reason", "ban-random-0"}
    assert {"pass@1", "maj@1", "maj@2", "think_tokens", "reasoning_words_per_1k", "n_docs"} <= set(frame["metric"])
    assert (frame[frame["metric"] == "n_docs"]["value"] == 2).all()
    # 6 generated tokens, counted by re-tokenising the text: a piece that continued the response prefix mid-word
    # (the demo's opening) can split into one token more on its own
    assert frame[frame["metric"] == "think_tokens"]["value"].between(1, 7).all()
    table = (out / "table.md").read_text()
    assert "| No steering |" in table and f"| #{top} γ=2 |" in table and "reasoning_demo pass@1" in table
    assert "| Reason (ban R) |" in (out / "wordban.md").read_text()
    cells = _cells(cfg)
    assert len(cells) == 4
    lm_eval_dir = cells[0].parent / "lm_eval"
    assert list(lm_eval_dir.glob("*/results_*.json")) and list(lm_eval_dir.glob("*/samples_reasoning_demo_*.jsonl"))
    samples = [json.loads(x) for x in next(lm_eval_dir.glob("*/samples_*.jsonl")).read_text().splitlines()]
    assert len(samples) == 2 and len(samples[0]["resps"][0]) == 2  # two repeats per problem
    records = pd.read_parquet(out / "attempts.parquet")  # one row per cell, problem and answer, means as results.csv
    assert len(records) == 4 * 2 * 2 and (cells[0].parent / "attempts.parquet").is_file()
    means = records.groupby(["task", "label"])[["correct", "think_tokens"]].mean()
    for metric, column in (("pass@1", "correct"), ("think_tokens", "think_tokens")):
        shown = frame[frame["metric"] == metric].set_index(["task", "label"])["value"]
        assert means[column].reindex(shown.index).tolist() == pytest.approx(shown.tolist())
    (cells[0].parent / "attempts.parquet").unlink()  # a cell cached before records existed: read from its samples
    grid_cells = evaluate.cells(cfg)
    again = evaluate.collect_attempts(evaluate.Context(cfg, evaluate.inputs(cfg, grid_cells), grid_cells), grid_cells)
    pd.testing.assert_frame_equal(again, records)

    stamp = (out / "meta.json").read_text()
    assert evaluate.run(cfg) == out and (out / "meta.json").read_text() == stamp  # unchanged: skipped
    before = {p: p.stat().st_mtime_ns for p in cells}
    wider = pipeline("steering.gammas=[2.0,-2.0]", "benchmark.word_ban.enabled=false")
    frame = pd.read_csv(evaluate.run(wider) / "results.csv")
    assert set(frame["label"]) == {"baseline", f"f{top}_g2", f"f{top}_g-2"}
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # old cells reused, one new cell computed
    assert len(_cells(cfg)) == 5


def test_a_multirun_job_writes_its_own_table_and_shares_cells(pipeline, tmp_path):
    cfg = pipeline("steering.baseline=false", "benchmark.word_ban.enabled=false", f"+job_dir={tmp_path / 'job0'}")
    out = evaluate.run(cfg)
    assert out == tmp_path / "job0" / "evaluate" and (out / "table.md").is_file()
    assert len(_cells(cfg)) == 1
    collect = pipeline("benchmark.word_ban.enabled=false")
    evaluate.run(collect)
    assert len(_cells(cfg)) == 2  # the collecting run computed only the baseline


BAD = [
    ("benchmark.tasks=[no_such_task]", "unknown benchmark task 'no_such_task'"),
    ("steering.features=[64]", r"steering.features names features \[64\] but the SAE has 64"),
    ("steering.gammas=[inf]", "steering.gammas must be finite"),
    ("steering.gammas=[strong]", "steering.gammas must be finite"),
    ("benchmark.engine=tpu", "unknown benchmark.engine 'tpu'"),
    ("steering.features=wait", "give a list of feature ids or `top`"),
    ("steering.f_max=big", "steering.f_max='big': use interpret, sae or a number"),
]


def test_bad_input_writes_nothing(pipeline, tmp_path):
    (tmp_path / "math.jsonl").write_text(json.dumps({"problem": "1+1?"}) + "\n")
    missing_field = ("benchmark.tasks=[math500]", f"+benchmark.data_files.math500={tmp_path / 'math.jsonl'}")
    for overrides, message in [*(((o,), m) for o, m in BAD),
                               (missing_field, "lacks field 'answer' needed by math500")]:
        cfg = pipeline(*overrides)
        with pytest.raises(UserError, match=message):
            evaluate.run(cfg)
        assert not (Path(cfg.paths.artifacts) / "demo" / "evaluate").exists()


def test_vllm_cells_share_one_engine_and_never_reuse_hf_cells(vocab_only):
    hf_cfg, vllm_cfg = vocab_only(), vocab_only("benchmark.engine=vllm", "benchmark.max_model_len=200")
    grid_cells = evaluate.cells(vllm_cfg)
    assert {c.label for c in grid_cells} == {"baseline", "f3_g2", "ban-reason", "ban-random-0"}
    hf, ctx = (evaluate.Context(c, evaluate.inputs(c, grid_cells), grid_cells) for c in (hf_cfg, vllm_cfg))
    engines = [evaluate.vllm_engine_args(ctx) for _ in grid_cells]
    assert engines[0] == {"pretrained": str(vllm_cfg.model.name), "revision": None, "trust_remote_code": False,
                          "dtype": "float32", "steer_layer": 1, "max_gen_toks": 6, "batch_size": 4, "seed": 1,
                          "max_model_len": 200}
    assert all(e == engines[0] for e in engines)  # baseline, steered and ban cells: one engine
    for cell in grid_cells:
        assert "engine" not in hf.key_context(cell)  # the HF cells keep the keys they had before vLLM cells existed
        assert ctx.key_context(cell)["engine"] == {"name": "vllm", "max_model_len": 200}
        assert evaluate.cell_dir(vllm_cfg, ctx, cell) != evaluate.cell_dir(hf_cfg, hf, cell)
    other_len = vocab_only("benchmark.engine=vllm", "benchmark.max_model_len=256")
    assert evaluate.cell_dir(other_len, evaluate.Context(other_len, ctx.inputs, grid_cells), grid_cells[0]) != \
        evaluate.cell_dir(vllm_cfg, ctx, grid_cells[0])
    baseline_only = vocab_only("benchmark.engine=vllm", "steering.features=[]", "benchmark.word_ban.enabled=false")
    assert evaluate.Context(baseline_only, {}, evaluate.cells(baseline_only)).steer_layer == 2  # model.layer


def test_vllm_settings_fail_fast_in_one_line(vocab_only, monkeypatch, tmp_path):
    from reasoning_sae.lm_eval import vllm_engine

    import_module = vllm_engine.importlib.import_module

    def no_vllm(name, *args):
        if name.split(".")[0] == "vllm":
            raise ImportError(f"No module named {name!r}", name=name)
        return import_module(name, *args)

    cfg = vocab_only("benchmark.engine=vllm")
    with monkeypatch.context() as patch:
        patch.setattr(vllm_engine.importlib, "import_module", no_vllm)
        with pytest.raises(UserError, match=r"^engine=vllm needs vLLM \(vllm is missing\): run `make setup`") as err:
            evaluate.run(cfg)
        assert "\n" not in str(err.value)
    monkeypatch.setattr(vllm_engine, "require_vllm", lambda: None)
    sae = random_sae(d_in=32, d_sae=16)
    sae.cfg.metadata["hook_name"] = "blocks.1.hook_resid_pre"
    sae.save(tmp_path / "pre_sae")
    for overrides, message in [
        (("benchmark.max_model_len=6",), r"benchmark.max_model_len=6 leaves no room for the prompt"),
        (("sae_source=local", f"sae_source.path={tmp_path / 'pre_sae'}"),
         r"engine=vllm steers blocks.L.hook_resid_post, not the SAE's blocks.1.hook_resid_pre: use benchmark.engine=hf"),
    ]:
        cfg = vocab_only("benchmark.engine=vllm", *overrides)
        with pytest.raises(UserError, match=message):
            evaluate.run(cfg)
    assert not (Path(cfg.paths.artifacts) / "demo" / "evaluate").exists()
    assert not (Path(cfg.paths.artifacts) / "demo" / "evaluate-cells").exists()


def _shape(table: str) -> str:
    """A markdown table with its numbers blanked: rows, columns and layout only."""
    return re.sub(r"-?\d+(\.\d+)?", "#", table)


@needs_vllm
def test_the_grid_on_vllm_gives_the_hf_tables_from_one_engine_and_caches_its_cells(compose, tiny_vllm_llama_dir,
                                                                                   monkeypatch):
    from reasoning_sae.lm_eval import vllm_engine

    base = (*tiny(tiny_vllm_llama_dir), *SMALL, "benchmark.repeats=1", "benchmark.max_gen_toks=16",
            "benchmark.word_ban.seeds=[]")  # baseline, one feature, one ban cell
    for stage in (corpus, train, vocab, score, interpret):
        stage.run(compose("interpret", base))
    hf_out = evaluate.run(compose("evaluate", base))  # the vLLM run below replaces this stage folder
    hf = pd.read_csv(hf_out / "results.csv")
    hf_tables = {name: (hf_out / name).read_text() for name in ("table.md", "wordban.md")}
    hf_cells = _cells(compose("evaluate", base))
    started = []
    engine = vllm_engine.engine

    def recording(**args):
        started.append(json.dumps(args, sort_keys=True, default=str))
        return engine(**args)

    monkeypatch.setattr(vllm_engine, "engine", recording)
    cfg = compose("evaluate", (*base, "benchmark.engine=vllm"))
    out = evaluate.run(cfg)
    assert len(started) == 3 and len(set(started)) == 1  # three cells, one engine
    assert not vllm_engine._ENGINES  # shut down when the stage ends

    vllm = pd.read_csv(out / "results.csv")
    top = json.loads((Path(cfg.paths.artifacts) / "demo" / "score" / "top_features.json").read_text())["features"][0]
    assert set(vllm["label"]) == {"baseline", f"f{top}_g2", "ban-reason"}
    assert sorted(zip(vllm["label"], vllm["metric"])) == sorted(zip(hf["label"], hf["metric"]))
    assert {"pass@1", "maj@1", "think_tokens", "reasoning_words_per_1k", "n_docs"} <= set(vllm["metric"])
    assert (vllm[vllm["metric"] == "n_docs"]["value"] == 2).all()
    # 16 generated tokens each, counted again by tokenizing the text (random tokens may split differently)
    assert vllm[vllm["metric"] == "think_tokens"]["value"].between(8, 24).all()
    for name, table in hf_tables.items():
        assert _shape((out / name).read_text()) == _shape(table)
    assert f"| #{top} γ=2 |" in hf_tables["table.md"] and "| Reason (ban R) |" in hf_tables["wordban.md"]
    cells = _cells(cfg)
    vllm_cells = sorted(set(cells) - set(hf_cells))
    assert len(hf_cells) == 3 and len(vllm_cells) == 3  # the vLLM cells are their own: no HF cell is reused
    for cell in vllm_cells:
        samples = next((cell.parent / "lm_eval").glob("*/samples_reasoning_demo_*.jsonl")).read_text().splitlines()
        responses = [json.loads(s)["resps"][0] for s in samples]
        assert len(responses) == 2 and all(len(r) == 1 and r[0].strip() for r in responses)

    before = {p: p.stat().st_mtime_ns for p in cells}
    fewer = evaluate.run(compose("evaluate", (*base, "benchmark.engine=vllm", "benchmark.word_ban.enabled=false")))
    assert set(pd.read_csv(fewer / "results.csv")["label"]) == {"baseline", f"f{top}_g2"}
    assert len(started) == 3 and all(p.stat().st_mtime_ns == t for p, t in before.items())  # cached: no engine


def test_evaluate_logs_to_wandb_offline_after_a_train_run_in_the_same_process(compose, tmp_path, monkeypatch):
    """`reproduce` runs train (a W&B run through Lightning) and evaluate in one process: wandb reads its environment
    once, so the evaluate run must get its offline mode from the config, not from os.environ (no login asked)."""
    import pandas as pd
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    from reasoning_sae.stages.evaluate import log_wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = compose("evaluate", ("logger=wandb",))
    train_run = WandbLogger(project="reasoning-sae", save_dir=str(tmp_path), mode="offline", name="train")
    train_run.experiment.log({"loss": 1.0})
    wandb.finish()
    frame = pd.DataFrame([{"task": "t", "label": "baseline", "metric": "pass@1", "value": 0.5}])
    log_wandb(cfg, frame, tmp_path)
    assert list((tmp_path / "artifacts" / "demo" / "logs" / "wandb").glob("offline-run-*"))


def test_budget_forcing_is_a_cell_per_task_keyed_by_its_settings_and_given_to_the_model(vocab_only, monkeypatch):
    from reasoning_sae.evaluate.cells import Cell
    from reasoning_sae.lm_eval import model as model_module

    on = ("benchmark.budget_forcing.enabled=true", "benchmark.budget_forcing.min_thinking_tokens=4")
    cfg, off = vocab_only(*on), vocab_only()
    grid_cells = evaluate.cells(cfg)
    assert Cell("reasoning_demo", force=4) in grid_cells and not any(c.force for c in evaluate.cells(off))
    assert set(grid_cells) - set(evaluate.cells(off)) == {Cell("reasoning_demo", force=4)}
    ctx, ctx_off = (evaluate.Context(c, evaluate.inputs(c, evaluate.cells(c))) for c in (cfg, off))
    baseline = Cell("reasoning_demo")
    assert evaluate.cell_dir(cfg, ctx, baseline) == evaluate.cell_dir(off, ctx_off, baseline)  # others keep their keys
    forced = evaluate.cell_dir(cfg, ctx, Cell("reasoning_demo", force=4)).name
    other_word = vocab_only(*on, "benchmark.budget_forcing.word=Hmm")
    assert forced.startswith("force-4-") and forced != evaluate.cell_dir(
        other_word, evaluate.Context(other_word, ctx.inputs), Cell("reasoning_demo", force=4)).name
    made = {}
    monkeypatch.setattr(model_module, "SteeredLM", lambda **kwargs: made.update(kwargs))
    evaluate.model_for(ctx, Cell("reasoning_demo", force=4))
    assert {k: made[k] for k in ("min_thinking_tokens", "force_word", "max_forces", "max_gen_toks")} == {
        "min_thinking_tokens": 4, "force_word": "Wait", "max_forces": 2, "max_gen_toks": 6}
    with pytest.raises(UserError, match="min_thinking_tokens=6 is not below benchmark.max_gen_toks=6"):
        evaluate.cells(vocab_only(*on, "benchmark.budget_forcing.min_thinking_tokens=6"))


def test_the_hf_engines_batch_size_keys_its_cells_and_vllms_does_not(vocab_only):
    from reasoning_sae.evaluate.cells import Cell

    def key(*overrides):
        cfg = vocab_only(*overrides)
        return evaluate.cell_dir(cfg, evaluate.Context(cfg, evaluate.inputs(cfg, evaluate.cells(cfg))),
                                 Cell("reasoning_demo")).name

    # lm-eval's HF batches draw their samples from one random stream: another batch size, other samples
    assert key("benchmark.batch_size=4") != key("benchmark.batch_size=5") != key("benchmark.batch_size=8")
    eight = vocab_only("benchmark.batch_size=8")  # the batch size of every cell made before it was keyed
    assert "batch_size" not in json.dumps(evaluate.Context(eight, {}).key_context(Cell("reasoning_demo")))
    vllm = ("benchmark.engine=vllm",)
    assert key(*vllm, "benchmark.batch_size=4") == key(*vllm, "benchmark.batch_size=5")
