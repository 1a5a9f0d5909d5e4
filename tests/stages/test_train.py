import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reasoning_sae import SparseAutoencoder, UserError
from reasoning_sae.manifest import check_manifest
from reasoning_sae.stages import corpus, train

REPO = Path(__file__).resolve().parents[2]


def tiny(model_dir) -> tuple[str, ...]:
    """A 4-layer random Llama, a small corpus and a 64-latent SAE: the whole pipeline in seconds."""
    return (f"model.name={model_dir}", "model.n_layers=4", "model.d_model=32", "model.layer=2",
            "data.sources.reasoning.rows=40", "data.sources.chat.rows=60", "data.context_size=32",
            "data.scoring.docs=12", "sae.d_sae=64", "sae.batch_size_tokens=64", "sae.training_tokens=1280",
            "sae.n_batches_in_buffer=4", "sae.store_batch_size_prompts=4", "sae.checkpoint_every=5",
            "sae.eval_sequences=4", "sae.log_every=5", "sae.lr=1e-3", "logger=csv", "seed=1",
            "benchmark.limit=2", "benchmark.repeats=2", "benchmark.max_gen_toks=6", "benchmark.batch_size=4",
            "benchmark.word_ban.seeds=[0]", "steering.top_n=1")


def test_train_stage_writes_a_sae_lens_directory_metrics_and_plots(compose, tiny_llama_dir):
    cfg = compose("train", tiny(tiny_llama_dir))
    corpus.run(cfg)
    out = train.run(cfg)
    sae = SparseAutoencoder.load(out / "sae")
    assert (sae.d_in, sae.d_sae) == (32, 64)
    meta = sae.cfg.metadata
    assert meta["hook_name"] == "blocks.2.hook_resid_post" and meta["model_name"] == str(tiny_llama_dir)
    assert meta["tokens_seen"] == 1280 and meta["exclude_special_tokens"] == [0, 1, 2]
    assert set(load_file(out / "sae" / "sparsity.safetensors")) == {"sparsity", "max_activation"}
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("metrics/l0", "metrics/explained_variance", "metrics/ce_loss_score", "metrics/kl_div_with_sae"):
        assert key in metrics
    # a random-weight model sits at ln(vocab) either way: splicing may move its loss a little in both directions
    assert metrics["metrics/ce_loss_with_sae"] >= metrics["metrics/ce_loss_without_sae"] - 1e-2
    log = (out / "train_log.csv").read_text().splitlines()
    assert "losses/mse_loss" in log[0] and "metrics/explained_variance" in log[0] and len(log) > 3
    assert (out / "density.png").stat().st_size > 1000
    assert not list(out.parent.glob(".train-work-*/checkpoints/*"))
    assert meta["sink_positions"] == 1 and "metrics/kl_div_score" in metrics
    card = (out / "sae" / "README.md").read_text()  # a model card in SAELens' conventions
    assert card.startswith("---\n") and "library_name: saelens" in card and "# Sparse autoencoder on" in card
    assert f"| L0 (active latents per token) | {metrics['metrics/l0']:.1f} |" in card
    assert "first 1 position(s) of each sequence (attention sink)" in card and "| training tokens | 1,280 (" in card
    assert check_manifest(out) == []


def test_sae_lens_loads_the_trained_sae(compose, tiny_llama_dir):
    from sae_lens import SAE

    cfg = compose("train", tiny(tiny_llama_dir))
    corpus.run(cfg)
    out = train.run(cfg)
    ours, theirs = SparseAutoencoder.load(out / "sae"), SAE.load_from_disk(str(out / "sae"))
    x = torch.randn(7, 32)
    torch.testing.assert_close(ours.encode(x), theirs.encode(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("override", "message"), [
    ("model.layer=9", "layer 9 .* out of range: the model has 4 layers"),
    ("sae.architecture=gated", "unknown SAE architecture 'gated'"),
    ("sae.colour=red", "unknown sae setting"),
    ("sae.training_tokens=10", "must be at least sae.batch_size_tokens"),
])
def test_bad_training_config(compose, tiny_llama_dir, override, message):
    cfg = compose("train", (*tiny(tiny_llama_dir), f"+{override}" if "colour" in override else override))
    corpus.run(cfg)
    with pytest.raises(UserError, match=message):
        train.run(cfg)
    assert not (Path(cfg.paths.artifacts) / "demo" / "train").exists()


def test_train_needs_the_corpus(compose, tiny_llama_dir):
    with pytest.raises(UserError, match="run the corpus stage first"):
        train.run(compose("train", tiny(tiny_llama_dir)))


def _cli(args, artifacts: Path):
    env = {"REASONING_SAE_ARTIFACTS": str(artifacts), "PATH": "/usr/bin:/bin", "HOME": str(artifacts.parent),
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "reasoning_sae", *args], capture_output=True, text=True, env=env,
                          cwd=REPO)


def test_resume_after_sigkill_ends_with_the_same_weights(tmp_path, tiny_llama_dir):
    args = tiny(tiny_llama_dir)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for root in (straight, killed):
        assert _cli(["corpus", *args], root).returncode == 0
    assert _cli(["train", *args], straight).returncode == 0
    crash = _cli(["train", *args, "callbacks=[{_target_:tests.helpers.KillAtStep,step:12}]"], killed)
    assert crash.returncode == -9
    assert list(killed.glob("demo/.train-work-*/checkpoints/last.ckpt"))
    resumed = _cli(["train", *args, "resume=true"], killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout + resumed.stderr
    a = load_file(straight / "demo/train/sae/sae_weights.safetensors")
    b = load_file(killed / "demo/train/sae/sae_weights.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=0, rtol=0)


def test_multirun_gives_one_run_directory_and_one_wandb_run_per_job(tmp_path, tiny_llama_dir):
    args = tiny(tiny_llama_dir)
    assert _cli(["corpus", *args], tmp_path).returncode == 0
    sweep = _cli(["train", "-m", *[a for a in args if not a.startswith("logger")], "logger=wandb",
                  "sae.l1_coefficient=1,5"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    jobs = sorted(tmp_path.glob("demo/multirun/train/*/[0-9]"))
    assert [j.name for j in jobs] == ["0", "1"]
    l1 = [json.loads((j / "train" / "config.yaml").read_text().split("l1_coefficient: ")[1].split("\n")[0])
          for j in jobs]
    assert l1 == [1.0, 5.0]
    weights = [load_file(j / "train" / "sae" / "sae_weights.safetensors")["W_enc"] for j in jobs]
    assert not torch.equal(*weights)
    runs = list(tmp_path.glob("demo/logs/wandb/offline-run-*"))
    assert len(runs) == 2 and all(list(r.glob("*.wandb")) for r in runs)


def test_nan_activations_stop_with_the_step_and_keep_the_last_checkpoint(compose, tiny_llama_dir, monkeypatch):
    from reasoning_sae.train import store

    cfg = compose("train", tiny(tiny_llama_dir))
    corpus.run(cfg)
    read, calls = store.LMSource.read, []

    def poisoned(self):
        calls.append(1)
        acts = read(self)
        return acts * float("nan") if len(calls) > 6 else acts

    monkeypatch.setattr(store.LMSource, "read", poisoned)
    with pytest.raises(UserError, match=r"non-finite activations \(NaN/inf\) in the batch of step \d+"):
        train.run(cfg)
    assert list(Path(cfg.paths.artifacts).glob("demo/.train-work-*/checkpoints/last.ckpt"))
    assert not (Path(cfg.paths.artifacts) / "demo" / "train").exists()
