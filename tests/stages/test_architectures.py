"""Every SAE architecture through the tiny pipeline: train (sae=<name>), score, interpret, falsify and evaluate with
steering add and clamp (clamp refused for topk, in one line, before the model loads). The corpus and vocab stages
do not depend on the SAE: they run once and are copied into each architecture's artifacts."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reasoning_sae import UserError
from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.stages import corpus, evaluate, falsify, interpret, score, train, vocab
from tests.helpers import tiny

# tiny() trains 64 latents: k and the matryoshka widths fit them
ARCHITECTURES = {
    "standard": ("sae=fixed",),
    "topk": ("sae=topk", "sae.k=4"),
    "jumprelu": ("sae=jumprelu",),
    "batchtopk": ("sae=batchtopk", "sae.k=4"),
    "matryoshka": ("sae=matryoshka", "sae.k=4", "sae.matryoshka_widths=[16,64]"),
}
SAVED_AS = {"standard": "standard", "topk": "topk"}  # the rest are saved as SAELens' inference jumprelu
# one cell per evaluate run: the top feature at gamma 2, one problem, one sample
SMALL = ("score.top_k=2", "falsify.random_features=2", "steering.baseline=false", "steering.gammas=[2.0]",
         "benchmark.word_ban.enabled=false", "benchmark.limit=1", "benchmark.repeats=1")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, tiny_llama_dir):
    """The corpus and vocab artifacts, shared by every architecture."""
    from hydra import compose, initialize_config_dir

    from reasoning_sae.models.config import conf_dir

    root = tmp_path_factory.mktemp("architectures") / "artifacts"
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for stage in (corpus, vocab):
            stage.run(compose(config_name=stage.__name__.rsplit(".", 1)[-1],
                              overrides=[f"paths.artifacts={root}", *tiny(tiny_llama_dir), *SMALL]))
    return root / "demo"


def run_pipeline(architecture: str, compose, tiny_llama_dir, upstream, tmp_path) -> tuple[Path, callable]:
    exp = tmp_path / "artifacts" / "demo"
    for stage in ("corpus", "vocab"):
        shutil.copytree(upstream / stage, exp / stage)
    # decoder-norm folding (the released code's ReasonScore) as well, where it is defined (not topk: tests/
    # test_bad_inputs.py); saved batchtopk / matryoshka SAEs are jumprelu ones, which fold their thresholds too
    fold = () if architecture == "topk" else ("score.fold_decoder_norm=true",)
    overrides = (*tiny(tiny_llama_dir), *ARCHITECTURES[architecture], *SMALL, *fold)
    for stage in (train, score, interpret, falsify):
        stage.run(compose(stage.__name__.rsplit(".", 1)[-1], overrides))
    return exp, lambda *extra: compose("evaluate", (*overrides, *extra))


def check_pipeline(architecture: str, exp: Path, evaluate_cfg) -> None:
    sae = SparseAutoencoder.load(exp / "train" / "sae")
    assert sae.cfg.architecture == SAVED_AS.get(architecture, "jumprelu")
    scores = pd.read_parquet(exp / "score" / "scores.parquet")
    assert len(scores) == 64 and scores["reason_score"].notna().any()
    f_r = json.loads((exp / "score" / "top_features.json").read_text())["features"]
    assert len(f_r) == 2
    assert (exp / "interpret" / "index.html").is_file()
    assert all((exp / "interpret" / "features" / f"{f}.html").is_file() for f in f_r)
    f_max = json.loads((exp / "interpret" / "f_max.json").read_text())
    assert str(f_r[0]) in f_max
    assert set(pd.read_csv(exp / "falsify" / "falsify.csv")["group"]) >= {"F_R"}
    modes = ("add",) if architecture == "topk" else ("add", "clamp")
    for mode in modes:
        out = evaluate.run(evaluate_cfg(f"steering.mode={mode}"))
        frame = pd.read_csv(out / "results.csv")
        assert set(frame["label"]) == {f"f{f_r[0]}_g2"}, mode
        assert json.loads((out / "config.yaml").parent.joinpath("meta.json").read_text())["summary"]
    if architecture == "topk":
        with pytest.raises(UserError, match=r"^steering mode clamp needs .* a topk SAE does not give: use mode=add$"):
            evaluate.run(evaluate_cfg("steering.mode=clamp"))


def test_matryoshka_runs_every_stage(compose, tiny_llama_dir, upstream, tmp_path):
    """The smoke case: the architecture furthest from the standard one (saved as jumprelu, clamp at its threshold)."""
    check_pipeline("matryoshka", *run_pipeline("matryoshka", compose, tiny_llama_dir, upstream, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("architecture", [a for a in ARCHITECTURES if a != "matryoshka"])
def test_every_architecture_runs_every_stage(architecture, compose, tiny_llama_dir, upstream, tmp_path):
    check_pipeline(architecture, *run_pipeline(architecture, compose, tiny_llama_dir, upstream, tmp_path))


@pytest.mark.parametrize("name", ["jumprelu", "batchtopk", "matryoshka", "topk"])
def test_the_demo_reproduce_composes_and_passes_the_preflight_with_each_architecture(name, tmp_path):
    """`python -m reasoning_sae reproduce experiment=demo sae=<name>`: every check the CLI runs before Hydra starts."""
    from reasoning_sae import preflight

    preflight.run("reproduce", ["experiment=demo", f"sae={name}", f"paths.artifacts={tmp_path}"])
    cfg = preflight.compose("reproduce", ["experiment=demo", f"sae={name}"])
    assert cfg.sae.architecture == {"matryoshka": "matryoshka_batchtopk"}.get(name, name)
    with pytest.raises(UserError, match="sae.k=0"):  # and the checks do run
        preflight.run("reproduce", ["experiment=demo", f"sae={name}", "sae.k=0", f"paths.artifacts={tmp_path}"])
