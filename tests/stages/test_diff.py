import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from reasoning_sae import SparseAutoencoder, UserError
from reasoning_sae.stages import corpus, diff, score, train, vocab
from tests.helpers import tiny

UPSTREAM = ("corpus", "train", "vocab", "score")


def small(model_dir, *extra) -> tuple[str, ...]:
    """tiny() plus a diff stage that trains 4 small SAEs: layers 1 and 3, trajectories S and SD."""
    return (*tiny(model_dir), "diff.crosslayer.layers=[1,3]", "diff.train.training_tokens=640",
            "diff.train.sequences=40", "diff.random_features=10", *extra)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_llama_dir) -> Path:
    """corpus, train, vocab and score of the tiny model, built once; each test copies them."""
    from hydra import compose, initialize_config_dir

    from reasoning_sae.models.config import conf_dir

    root = tmp_path_factory.mktemp("diff_pipeline") / "artifacts"
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="diff", overrides=[f"paths.artifacts={root}", *small(tiny_llama_dir)])
    for stage in (corpus, train, vocab, score):
        stage.run(cfg)
    return root / "demo"


@pytest.fixture
def upstream(pipeline, tmp_path) -> Path:
    for stage in UPSTREAM:
        shutil.copytree(pipeline / stage, tmp_path / "artifacts" / "demo" / stage)
    return tmp_path / "artifacts" / "demo"


def test_diff_stage_writes_presence_and_table_3_and_skips_a_rerun(compose, tiny_llama_dir, upstream):
    cfg = compose("diff", small(tiny_llama_dir))
    out = diff.run(cfg)
    assert out == upstream / "diff"
    presence = pd.read_csv(out / "presence.csv")
    assert presence["trajectory"].tolist() == ["S", "S->D"] and presence["init_from"].fillna("").tolist() == ["", "S"]
    f_r = json.loads((upstream / "score" / "top_features.json").read_text())["features"]
    assert (presence["fr_total"] == len(f_r)).all() and (presence["set_total"] == 10).all()
    assert presence["fr_share"].between(0, 1).all() and presence["source"].tolist() == ["chat", "reasoning"]
    counts = pd.read_csv(out / "crosslayer.csv")
    assert sorted(zip(counts["layer"], counts["set"])) == [(1, "random"), (1, "reasoning"), (3, "random"),
                                                           (3, "reasoning")]
    assert (counts["same"] + counts["maybe"] + counts["diff"] == counts["n"]).all()
    assert counts.set_index("set").loc["random", "n"].tolist() == [10, 10]
    matches = pd.read_csv(out / "matches.csv")
    assert len(matches) == 2 * (len(f_r) + 10) and matches.groupby("layer")["partner"].nunique().tolist() == [
        len(f_r) + 10] * 2
    table = (out / "crosslayer.md").read_text()
    assert "| Layer | Reasoning diff | maybe | same | Random diff | maybe | same |" in table and "| 3 |" in table
    assert "| S->D |" in (out / "presence.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["trained_here"]) == {"L1", "L3", "S", "SD"}
    assert summary["trained_here"]["SD"]["training_tokens"] == 192  # 30% of 640, whole batches of 64
    assert summary["assignment"] == {"similarity": "dot", "over": "features"}  # Eq. 8 as v2 writes it
    assert "Hungarian method on decoder dot products" in table
    assert "base-model vs reasoning-model axis" in summary["readme"] and "S->M->F" in summary["readme"]
    assert not (out / "saes").exists()  # diff.save_saes is off
    stamp = (out / "meta.json").stat().st_mtime_ns
    diff.run(cfg)
    assert (out / "meta.json").stat().st_mtime_ns == stamp  # skipped: nothing changed


def test_given_saes_are_used_and_saved_ones_are_kept(compose, tiny_llama_dir, upstream):
    main = str(upstream / "train" / "sae")
    cfg = compose("diff", small(tiny_llama_dir, f"+diff.stagewise.saes.S={main}", "diff.save_saes=true",
                                "diff.crosslayer.layers=[1]"))
    out = diff.run(cfg)
    presence = pd.read_csv(out / "presence.csv").set_index("name")
    assert presence.loc["S", "fr_share"] == 1.0 and presence.loc["S", "set_share"] == 1.0  # the main SAE itself
    assert set(json.loads((out / "summary.json").read_text())["trained_here"]) == {"L1", "SD"}
    tuned = SparseAutoencoder.load(out / "saes" / "SD")
    assert tuned.cfg.metadata["hook_name"] == "blocks.2.hook_resid_post" and tuned.cfg.metadata["init_from"]
    assert set(load_file(out / "saes" / "L1" / "sae_weights.safetensors")) == {"W_enc", "b_enc", "W_dec", "b_dec"}


@pytest.mark.parametrize(("override", "message"), [
    ("diff.threshold=1.5", "diff.threshold=1.5 must lie strictly between 0 and 1"),
    ("diff.threshold=0", "strictly between 0 and 1"),
    ("diff.crosslayer.layers=[9]", "diff.crosslayer.layers: layer 9 is out of range: the model has 4 layers"),
    ("diff.crosslayer.layers=[2]", "the main SAE's own layer"),
    ("diff.crosslayer.maybe=0.8", "0 < maybe < same < 1"),
    ("diff.crosslayer.similarity=l2", "unknown diff.crosslayer.similarity 'l2': use dot .* or cosine"),
    ("diff.chunk=0", "chunk=0 must be a positive number"),
    ("diff.stagewise.trajectories=[SD]", "fine-tuned from S, which is not in"),
    ("diff.stagewise.trajectories=[S,SX]", r"stage\(s\) \['X'\] not in"),
    ("diff.train.finetune_fraction=0", "finetune_fraction=0"),
    ("diff.train.enabled=false", "no SAE given for S and diff.train.enabled is false"),
    ("diff.stagewise.stages.D.model=llama-3.1-8b", "needs an SAE of llama-3.1-8b"),
    ("+diff.crosslayer.saes.3=/nowhere", "diff.crosslayer.saes.3=/nowhere is not an SAE directory"),
])
def test_bad_input_is_one_line_and_writes_nothing(compose, tiny_llama_dir, upstream, override, message):
    cfg = compose("diff", small(tiny_llama_dir, override))
    with pytest.raises(UserError, match=message) as err:
        diff.run(cfg)
    assert "\n" not in str(err.value)
    assert not (upstream / "diff").exists() and not list(upstream.glob(".diff*"))


def test_a_given_sae_of_another_layer_is_refused(compose, tiny_llama_dir, upstream):
    cfg = compose("diff", small(tiny_llama_dir, f"+diff.crosslayer.saes.1={upstream / 'train' / 'sae'}"))
    with pytest.raises(UserError, match="reads layer 2, not 1"):
        diff.run(cfg)
    assert not (upstream / "diff").exists()


def test_diff_needs_the_upstream_stages(compose, tiny_llama_dir, upstream):
    shutil.rmtree(upstream / "score")
    with pytest.raises(UserError, match="run the score stage first"):
        diff.run(compose("diff", small(tiny_llama_dir)))
    assert not (upstream / "diff").exists()


def test_train_stage_fine_tunes_from_init_from(compose, tiny_llama_dir, upstream, tmp_path):
    """sae.init_from in the train stage: with a vanishing lr (0 is refused) the result is the starting SAE; its
    content is an input."""
    start = tmp_path / "start"
    shutil.copytree(upstream / "train" / "sae", start)
    cfg = compose("train", (*tiny(tiny_llama_dir), f"sae.init_from={start}", "sae.lr=1e-30"))
    out = train.run(cfg)
    tuned, init = SparseAutoencoder.load(out / "sae"), SparseAutoencoder.load(start)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(tuned, name), getattr(init, name), atol=1e-5, rtol=1e-5)
    assert tuned.cfg.metadata["init_from"] == str(start)
    assert "init_from" in json.loads((out / "meta.json").read_text())["inputs"]
    bad = compose("train", (*tiny(tiny_llama_dir), f"sae.init_from={start}", "sae.d_sae=32", "force=true"))
    with pytest.raises(UserError, match="but this run builds"):
        train.run(bad)


def test_paper_experiment_reads_the_paper_saes(compose):
    from reasoning_sae.models import model_config

    cfg = compose("diff", ("experiment=paper",))
    dc = cfg.diff
    assert list(dc.crosslayer.layers) == [13, 15, 17, 21, 23] and dc.threshold == 0.7 and dc.random_features == 100
    assert list(dc.stagewise.trajectories) == ["S", "SD", "SM", "SDF", "SMF"] and not dc.train.enabled
    models = {k: model_config(str(v.model)).name for k, v in dc.stagewise.stages.items()}
    assert models == {"S": "meta-llama/Llama-3.1-8B", "D": "meta-llama/Llama-3.1-8B",
                      "M": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "F": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"}
    sources = {k: cfg.data.sources[v.source].path for k, v in dc.stagewise.stages.items()}
    assert sources == {"S": "cerebras/SlimPajama-627B", "D": "open-thoughts/OpenThoughts-114k",
                       "M": "cerebras/SlimPajama-627B", "F": "open-thoughts/OpenThoughts-114k"}
    assert set(dc.stagewise.saes) == set(dc.stagewise.trajectories) and set(dc.crosslayer.saes) == {13, 15, 17, 21, 23}
    assert dc.crosslayer.saes[13].endswith("paper/layers/train/sae")  # one pass: 13 the run's own SAE, the rest
    assert dc.crosslayer.saes[15].endswith("paper/layers/train/saes/L15/sae")  # its train.saes entries


def test_default_layers_are_offsets_inside_the_model(compose, tiny_llama_dir, upstream):
    """Without diff.crosslayer.layers: main layer 2 + offsets (-4, -2, 2, 4) on 4 layers leaves layer 0 only."""
    base = [a for a in small(tiny_llama_dir) if not a.startswith("diff.crosslayer.layers")]
    out = diff.run(compose("diff", (*base, "diff.stagewise.trajectories=[]")))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layers"] == [0] and set(summary["trained_here"]) == {"L0"}
    assert pd.read_csv(out / "crosslayer.csv")["layer"].unique().tolist() == [0]
    assert len(pd.read_csv(out / "presence.csv")) == 0
    none = diff.run(compose("diff", (*base, "diff.crosslayer.offsets=[5]", "force=true")))
    assert pd.read_csv(none / "crosslayer.csv").empty and "No layers" in (none / "crosslayer.md").read_text()


def test_crosslayer_similarity_reaches_summary_and_the_fingerprint(compose, tiny_llama_dir, upstream):
    from reasoning_sae.artifacts import fingerprint

    args = (*small(tiny_llama_dir), "diff.stagewise.trajectories=[]", "diff.crosslayer.layers=[1]")
    cfg = compose("diff", (*args, "diff.crosslayer.similarity=cosine"))
    out = diff.run(cfg)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["assignment"] == {"similarity": "cosine", "over": "features"}
    assert "decoder cosines" in (out / "crosslayer.md").read_text()
    matches = pd.read_csv(out / "matches.csv")
    assert matches["decoder_cosine"].between(-1 - 1e-6, 1 + 1e-6).all()
    fp = fingerprint(cfg, diff.CONFIG_KEYS, {})
    assert fp != fingerprint(compose("diff", (*args, "diff.crosslayer.similarity=dot")), diff.CONFIG_KEYS, {})
