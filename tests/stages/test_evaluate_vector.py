"""The DiffMean cells of the evaluate stage (steering.vectors): the score stage's vector, scaled to the norm of the
first steered feature's update, steering through the same engines as the feature cells."""

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from reasoning_sae import UserError
from reasoning_sae.artifacts import read_diffmean
from reasoning_sae.evaluate.cells import Cell
from reasoning_sae.stages import corpus, evaluate, interpret, score, train, vocab
from tests.helpers import tiny

BASE = ("score.top_k=2", "steering.vectors=[diffmean]", "benchmark.word_ban.enabled=false")


@pytest.fixture
def pipeline(compose, tiny_llama_dir):
    base = (*tiny(tiny_llama_dir), *BASE)
    for stage in (corpus, train, vocab, score, interpret):
        stage.run(compose("interpret", base))
    return lambda *extra: compose("evaluate", (*base, *extra))


def test_a_diffmean_cell_steers_with_the_score_stages_vector_at_the_top_features_update_norm(pipeline):
    from reasoning_sae.sae import SparseAutoencoder
    from reasoning_sae.steering import update_norm

    cfg = pipeline("steering.baseline=false")
    root = Path(cfg.paths.artifacts) / "demo"
    top = json.loads((root / "score" / "top_features.json").read_text())["features"][0]
    f_max = json.loads((root / "interpret" / "f_max.json").read_text())[str(top)]
    sae = SparseAutoencoder.load(evaluate.sae_path(cfg))
    norm = update_norm(sae, top, f_max)
    assert norm == pytest.approx(f_max * float(sae.W_dec[top].detach().norm()), rel=1e-6)

    grid_cells = evaluate.cells(cfg)
    cell = Cell("reasoning_demo", gamma=2.0, vector="diffmean")
    assert grid_cells == [Cell("reasoning_demo", (top,), 2.0), cell]
    ctx = evaluate.Context(cfg, evaluate.inputs(cfg, grid_cells), grid_cells)
    path, vector, _ = read_diffmean(cfg)
    steering = ctx.key_context(cell)["steering"]
    assert steering["reference"] == [top] and steering["f_max"] == [f_max] and steering["norm"] == pytest.approx(norm)
    assert steering["file"] == evaluate.path_fingerprint(path) == ctx.inputs["diffmean"]
    assert "vector" not in json.dumps(ctx.key_context(grid_cells[0]))  # the feature cells keep their keys
    model = evaluate.model_for(ctx, cell)
    assert torch.equal(model.steering["vector_D"], torch.from_numpy(vector)) and model.steering["gamma"] == 2.0
    assert model.steering["norm"] == pytest.approx(norm) and model.steering["hook"] == sae.hook_name()
    vllm = pipeline("benchmark.engine=vllm", "model.layer=0")  # one engine at the vector's layer, vector cells alone
    assert evaluate.Context(vllm, ctx.inputs, [cell]).steer_layer == 2 == int(sae.hook_name().split(".")[1])

    start = time.perf_counter()
    out = evaluate.run(cfg)
    print(f"2 cells on the tiny model: {time.perf_counter() - start:.1f} s")
    frame = pd.read_csv(out / "results.csv")
    assert set(frame["label"]) == {f"f{top}_g2", "diffmean_g2"}
    assert "| DiffMean γ=2 |" in (out / "table.md").read_text()
    assert json.loads((out / "meta.json").read_text())["summary"]["vectors"]["norm"] == pytest.approx(norm)
    from reasoning_sae.figures.common import Artifacts
    from reasoning_sae.figures.steering import results, table1_numbers, vector_note

    note = vector_note(Artifacts(root), table1_numbers(results(Artifacts(root))))  # Table 1's note names them
    assert f"norm of feature #{top}'s update" in note and f"γ · {norm:.3g}" in note
    # another reference feature, or another vector, is another cell
    other = pipeline("steering.baseline=false", f"steering.features=[{(top + 1) % 64}]", "steering.f_max=1.0")
    other_ctx = evaluate.Context(other, evaluate.inputs(other, grid_cells), grid_cells)
    assert evaluate.cell_dir(other, other_ctx, cell) != evaluate.cell_dir(cfg, ctx, cell)
    baseline = Cell("reasoning_demo")
    assert evaluate.cell_dir(other, other_ctx, baseline) == evaluate.cell_dir(cfg, ctx, baseline)
    changed = {**ctx.inputs, "diffmean": "another vector"}
    assert evaluate.cell_dir(cfg, evaluate.Context(cfg, changed, grid_cells), cell) != evaluate.cell_dir(cfg, ctx, cell)

    # bad input, in one line, before any cell runs: no reference feature; a score stage older than DiffMean
    with pytest.raises(UserError, match="steering.features is empty: give features or top, or steering.vectors=") as err:
        evaluate.run(pipeline("steering.features=[]", "force=true"))
    assert "\n" not in str(err.value)
    path.unlink()
    with pytest.raises(UserError, match=r"written before DiffMean existed\): rerun it .*score force=true"):
        evaluate.run(pipeline("force=true"))
