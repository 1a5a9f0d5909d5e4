"""The paper run in miniature (slow; `.ci/run` runs it after `make test`): every stage of `experiment=paper_released`
with the authors' SAE read from a hub-layout HF cache through the real hub code path, then `make verify`."""

import json

import pandas as pd
import pytest

from tests.hub import put_in_hf_cache
from tests.paper.miniature import MODEL, SIZES, local_data, run
from tests.steering.test_hook import random_sae

pytestmark = pytest.mark.slow
PAPER_REPO = "andreuka18/deepseek-r1-distill-llama-8b-lmsys-openthoughts"
FEATURES = "[3,511]"  # steered: within the miniature SAE's 512 latents
DASHBOARDS = "[3,17,42,101,511]"  # f_max for the steered ones, dashboards for the figure panels
PANELS = tuple(f"figures.interfaces.{p}=[3,17,42,101]" for p in ("fig3a", "fig8a", "fig8b", "fig9a", "fig9b"))


def test_paper_released_in_miniature(tmp_path):
    hub = tmp_path / "hf" / "hub"
    sae = random_sae(d_in=576, d_sae=512, seed=7)  # the authors' release, in the embedded model's width
    sae.cfg.metadata.update(hook_name="blocks.19.hook_resid_post", model_name="smollm2-135m-instruct")
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
    labels = {"baseline", "f3_g2", "f511_g2", "ban-reason", "ban-random-0"}
    for task in ("aime24_nofigures", "math500", "gpqa_diamond_openai"):
        assert set(results.loc[results["task"] == task, "label"]) == labels
    report = (tmp_path / "paper" / "REPORT.md").read_text()
    assert "**A miniature of the `paper_released` experiment.**" in report
    assert f"{PAPER_REPO}/blocks.19.hook_resid_post at commit {commit[:12]}" in report
    verify = run(["-m", "reasoning_sae.figures.verify", "paper_released", *overrides], env)
    assert "a miniature of the paper run on smollm2-135m-instruct" in verify.stdout, verify.stdout
