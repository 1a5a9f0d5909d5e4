"""The paper run in miniature (slow; `.ci/run` runs it after `make test`): every stage of `experiment=paper` (its
diffing SAEs first, with the documented command), then of `experiment=paper_released` with an SAE in a hub-layout
HF cache read through the real hub code path, each followed by `make verify`."""

import json

import pandas as pd
import pytest

from tests.hub import put_in_hf_cache
from reasoning_sae import SparseAutoencoder
from tests.paper.miniature import MODEL, SIZES, TRAIN, local_data, run

pytestmark = pytest.mark.slow
PAPER_REPO = "andreuka18/deepseek-r1-distill-llama-8b-lmsys-openthoughts"
FEATURES = "[3,511]"  # steered: within the miniature SAE's 512 latents
DASHBOARDS = "[3,17,42,101,511]"  # f_max for the steered ones, dashboards for the figure panels
PANELS = tuple(f"figures.interfaces.{p}=[3,17,42,101]" for p in ("fig3a", "fig8a", "fig8b", "fig9a", "fig9b"))


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """experiment=paper in miniature: the diffing SAEs, then reproduce and verify."""
    root = tmp_path_factory.mktemp("paper")
    env = {"REASONING_SAE_ARTIFACTS": str(root / "artifacts")}
    overrides = ("experiment=paper", *MODEL, *SIZES, *TRAIN, *local_data(root / "data"),
                 f"paths.paper={root / 'paper'}")
    saes = run(["-m", "reasoning_sae.diff.saes", *overrides], env)
    reproduce = run(["-m", "reasoning_sae", "reproduce", *overrides], env)
    verify = run(["-m", "reasoning_sae.figures.verify", "paper", *overrides], env)
    return root, saes.stdout, reproduce.stdout + reproduce.stderr, verify.stdout


def test_paper_in_miniature(paper_run):
    root, saes, log, verify = paper_run
    art = root / "artifacts"
    assert "[11/11] trajectory SMF SAE" in saes and "Starting with 2 processes" in log
    meta = json.loads((art / "paper" / "train" / "sae" / "cfg.json").read_text())["metadata"]
    assert (meta["world_size"], meta["batch_size_tokens_per_rank"], meta["tokens_seen"]) == (2, 128, 20480)
    for trajectory, tokens in (("S", 20480), ("SD", 6144), ("SM", 6144), ("SDF", 6144), ("SMF", 6144)):
        sae_meta = json.loads((art / f"paper-diff-{trajectory}" / "train" / "sae" / "cfg.json").read_text())["metadata"]
        assert sae_meta["tokens_seen"] == tokens and (len(trajectory) == 1) == ("init_from" not in sae_meta)
    presence = pd.read_csv(art / "paper" / "diff" / "presence.csv")
    assert list(presence["name"]) == ["S", "SD", "SM", "SDF", "SMF"]
    assert set(pd.read_csv(art / "paper" / "diff" / "crosslayer.csv")["layer"]) == {17, 21}
    results = pd.read_csv(art / "paper" / "evaluate" / "results.csv")
    top = json.loads((art / "paper" / "score" / "top_features.json").read_text())["features"]
    assert {f"f{f}_g2" for f in top[:2]} < set(results["label"]) and len(top) == 16
    report = (root / "paper" / "REPORT.md").read_text()
    assert "**A miniature of the `paper` experiment.**" in report
    assert "a miniature of the paper run on smollm2-135m-instruct" in verify


def test_paper_released_in_miniature(paper_run, tmp_path):
    hub = tmp_path / "hf" / "hub"
    sae = SparseAutoencoder.load(paper_run[0] / "artifacts" / "paper" / "train" / "sae")  # the "authors'" release
    assert sae.cfg.metadata["hook_name"] == "blocks.19.hook_resid_post" and sae.d_sae == 512
    sae.save(tmp_path / "release")
    commit = put_in_hf_cache(hub, PAPER_REPO, tmp_path / "release", "blocks.19.hook_resid_post")
    env = {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "REASONING_SAE_ARTIFACTS": str(tmp_path / "artifacts")}
    overrides = ("experiment=paper_released", *MODEL, *SIZES, *local_data(tmp_path / "data"),
                 f"steering.features={FEATURES}", f"interpret.extra_features={DASHBOARDS}", *PANELS,
                 f"paths.paper={tmp_path / 'paper'}")
    reproduce = run(["-m", "reasoning_sae", "reproduce", *overrides], env)
    log = reproduce.stdout + reproduce.stderr
    assert "train left out (sae_source=hub" in log and "diff left out (skip_stages)" in log
    root = tmp_path / "artifacts" / "paper_released"
    top = json.loads((root / "score" / "top_features.json").read_text())
    assert top["sae"]["kind"] == "hub" and top["sae"]["commit"] == commit and len(top["features"]) == 200
    assert not (root / "train").exists() and not (root / "corpus" / "train").exists()
    results = pd.read_csv(root / "evaluate" / "results.csv")
    labels = {"baseline", "f3_g2", "f511_g2", "diffmean_g2", "ban-reason", "ban-random-0"}  # DiffMean: at #3's norm
    for task in ("aime24_nofigures", "math500", "gpqa_diamond_openai"):
        assert set(results.loc[results["task"] == task, "label"]) == labels
    report = (tmp_path / "paper" / "REPORT.md").read_text()
    assert "**A miniature of the `paper_released` experiment.**" in report
    assert f"{PAPER_REPO}/blocks.19.hook_resid_post at commit {commit[:12]}" in report
    verify = run(["-m", "reasoning_sae.figures.verify", "paper_released", *overrides], env)
    assert "a miniature of the paper run on smollm2-135m-instruct" in verify.stdout, verify.stdout
