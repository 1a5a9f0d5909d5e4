import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reasoning_sae import SparseAutoencoder, UserError
from reasoning_sae.manifest import check_manifest
from reasoning_sae.stages import corpus, train
from tests.helpers import REPO, tiny

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


def _no_model(*_, **__):
    raise AssertionError("the model was loaded before the config was checked")


@pytest.mark.parametrize(("override", "message"), [
    ("model.layer=9", "model.layer=9 is out of range: the model has 4 layers, set model.layer to 0-3"),
    ("model.layer=abc", "model.layer='abc': give a whole number >= 0"),
    ("sae.architecture=gated", "unknown sae.architecture 'gated': use one of batchtopk, jumprelu, "
                               "matryoshka_batchtopk, standard, topk"),
    ("sae.colour=red", "unknown sae setting"),
    ("sae.training_tokens=10", "must be at least sae.batch_size_tokens"),
    ("sae.lr=nan", r"sae.lr=nan: give a finite number > 0 \(default: 5e-05\)"),
    ("sae.lr=0", "sae.lr=0: give a finite number > 0"),
    ("sae.lr=-0.001", "sae.lr=-0.001: give a finite number > 0"),
    ("sae.lr=abc", "sae.lr='abc': give a finite number > 0"),
    ("sae.l1_coefficient=-1", "sae.l1_coefficient=-1: give a finite number >= 0"),
    ("sae.l1_coefficient=inf", "sae.l1_coefficient=inf: give a finite number >= 0"),
    ("sae.training_tokens=-1280", "sae.training_tokens=-1280: give a whole number >= 1"),
    ("sae.batch_size_tokens=0", "sae.batch_size_tokens=0: give a whole number >= 1"),
    ("sae.batch_size_tokens=abc", "sae.batch_size_tokens='abc': give a whole number >= 1"),
    ("sae.batch_size_tokens=6.5", "sae.batch_size_tokens=6.5: give a whole number >= 1"),
    ("sae.log_every=0", "sae.log_every=0: give a whole number >= 1"),
    ("sae.lr_decay_fraction=1.5", r"sae.lr_decay_fraction=1.5: give a finite number in \[0, 1\]"),
    ("sae.architecture=topk", "sae.architecture=topk needs sae.k"),
    ("data.context_size=abc", "data.context_size='abc': give a whole number >= 2"),
    ("resume=maybe", "resume='maybe': give true or false"),
])
def test_bad_training_config_fails_before_anything_is_read_or_written(compose, tiny_llama_dir, monkeypatch, override,
                                                                      message):
    """No corpus needed: the whole config is checked first (one line naming the setting and the fix)."""
    cfg = compose("train", (*tiny(tiny_llama_dir), f"+{override}" if "colour" in override else override))
    monkeypatch.setattr(train, "load_lm", _no_model)
    with pytest.raises(UserError, match=message) as err:
        train.run(cfg)
    assert "\n" not in str(err.value)
    assert not Path(cfg.paths.artifacts).exists()


def test_a_bad_value_exits_2_with_one_line(tmp_path, tiny_llama_dir):
    run = _cli(["train", *tiny(tiny_llama_dir), "sae.lr=nan"], tmp_path / "artifacts")
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["error: sae.lr=nan: give a finite number > 0 (default: 5e-05)"]
    assert not list((tmp_path / "artifacts").glob("demo/*train*"))


def test_a_truncated_checkpoint_on_resume_is_one_line_before_the_model_loads(compose, tiny_llama_dir, monkeypatch):
    cfg = compose("train", (*tiny(tiny_llama_dir), "resume=true"))
    corpus.run(cfg)
    checkpoints = train.work_dir(cfg, train.inputs(cfg)) / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"global_step": 10, "state_dict": {"w": torch.zeros(100)}}, checkpoints / "epoch=0-step=10.ckpt")
    (checkpoints / "last.ckpt").write_bytes((checkpoints / "epoch=0-step=10.ckpt").read_bytes()[:300])
    monkeypatch.setattr(train, "load_lm", _no_model)
    with pytest.raises(UserError, match=r"the checkpoint .*/last.ckpt cannot be read \(.*\), cut short or damaged .*: "
                                        r"delete it or set resume=false to train from step 0, or copy "
                                        r"epoch=0-step=10.ckpt over it to resume from step 10$") as err:
        train.run(cfg)
    assert "\n" not in str(err.value)
    (checkpoints / "epoch=0-step=10.ckpt").unlink()
    with pytest.raises(UserError, match="delete it or set resume=false to train from step 0$"):
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


def _steps(csv: Path) -> list[int]:
    header, *rows = csv.read_text().splitlines()
    column = header.split(",").index("step")
    return [int(row.split(",")[column]) for row in rows]


def test_resume_after_sigkill_ends_with_the_same_weights_and_log(tmp_path, tiny_llama_dir):
    """A row every 2 steps, a checkpoint every 5, killed at 12: row 11 was written after the checkpoint of step 10,
    so the resumed run writes it again, and Lightning's logger starts its file afresh on resume."""
    args = (*tiny(tiny_llama_dir), "sae.log_every=2")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _cli(["corpus", *args], straight).returncode == 0
    shutil.copytree(straight / "demo" / "corpus", killed / "demo" / "corpus")
    assert _cli(["train", *args], straight).returncode == 0
    crash = _cli(["train", *args, "callbacks=[{_target_:tests.helpers.KillAtStep,step:12}]"], killed)
    assert crash.returncode == -9
    assert list(killed.glob("demo/.train-work-*/checkpoints/last.ckpt"))
    assert _steps(next(killed.glob("demo/.train-work-*/csv/metrics.csv"))) == [1, 3, 5, 7, 9, 11]
    resumed = _cli(["train", *args, "resume=true"], killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout + resumed.stderr
    a = load_file(straight / "demo/train/sae/sae_weights.safetensors")
    b = load_file(killed / "demo/train/sae/sae_weights.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=0, rtol=0)
    log = killed / "demo/train/train_log.csv"
    assert _steps(log) == list(range(1, 20, 2))
    assert log.read_text() == (straight / "demo/train/train_log.csv").read_text()  # exact resume: the same rows
    assert not list(killed.glob("demo/.train-work-*/log-segments"))


def test_a_multi_sae_run_resumes_after_sigkill_to_the_same_weights_and_logs(tmp_path, tiny_llama_dir):
    """Two SAEs whose buffers refill at different times (4 and 6 batches): every buffer, its place in the shared LM
    reads and each SAE's optimizer state come back from the checkpoint of step 10."""
    args = (*tiny(tiny_llama_dir), "sae.log_every=2", "train.saes=[{name:L1,layer:1,n_batches_in_buffer:6}]")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _cli(["corpus", *args], straight).returncode == 0
    shutil.copytree(straight / "demo" / "corpus", killed / "demo" / "corpus")
    assert _cli(["train", *args], straight).returncode == 0
    crash = _cli(["train", *args, "callbacks=[{_target_:tests.helpers.KillAtStep,step:12}]"], killed)
    assert crash.returncode == -9
    resumed = _cli(["train", *args, "resume=true"], killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    for sub in ("demo/train", "demo/train/saes/L1"):
        a = load_file(straight / sub / "sae/sae_weights.safetensors")
        b = load_file(killed / sub / "sae/sae_weights.safetensors")
        for name in a:
            torch.testing.assert_close(a[name], b[name], atol=0, rtol=0)
        assert _steps(killed / sub / "train_log.csv") == list(range(1, 20, 2))
        assert (killed / sub / "train_log.csv").read_text() == (straight / sub / "train_log.csv").read_text()


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
    with pytest.raises(UserError, match=r"non-finite activations \(NaN/inf\) in the batch of step \d+, from the model "
                                        r"at this layer: .*"
                                        r"model.dtype=float32\) and train again; .*this run's checkpoint of step "):
        train.run(cfg)
    assert list(Path(cfg.paths.artifacts).glob("demo/.train-work-*/checkpoints/last.ckpt"))
    assert not (Path(cfg.paths.artifacts) / "demo" / "train").exists()


def _nan_from(monkeypatch, step: int) -> None:
    """The SAE's input turns NaN from `step` on, so its loss does."""
    from reasoning_sae.train.module import SAEModule

    scale = SAEModule.scale
    monkeypatch.setattr(SAEModule, "scale",
                        lambda self, x: scale(self, x) * (float("nan") if self.global_step >= step else 1.0))


def test_a_non_finite_loss_names_the_checkpoint_that_exists_and_no_contradictory_fix(compose, tiny_llama_dir,
                                                                                     monkeypatch):
    cfg = compose("train", tiny(tiny_llama_dir))
    corpus.run(cfg)
    _nan_from(monkeypatch, 12)
    with pytest.raises(UserError) as err:
        train.run(cfg)
    last = train.work_dir(cfg, train.inputs(cfg)) / "checkpoints" / "last.ckpt"
    assert str(err.value) == (
        "the SAE loss became non-finite at step 12: lower sae.lr (now 0.001) and train again; changed settings train "
        "from step 0 (another work folder), and resume=true with these settings would replay this run's checkpoint "
        f"of step 10 ({last}) into the same failure")
    assert train.checkpoint_step(last) == 10
    assert not (Path(cfg.paths.artifacts) / "demo" / "train").exists()


def test_a_non_finite_loss_before_the_first_checkpoint_claims_none_and_leaves_nothing(compose, tiny_llama_dir,
                                                                                      monkeypatch):
    cfg = compose("train", tiny(tiny_llama_dir))
    corpus.run(cfg)
    _nan_from(monkeypatch, 2)
    with pytest.raises(UserError) as err:
        train.run(cfg)
    assert str(err.value) == (
        "the SAE loss became non-finite at step 2: lower sae.lr (now 0.001) and train again; no checkpoint of this "
        "run was written (the first was due at step 5): there is nothing to resume")
    assert not list(Path(cfg.paths.artifacts).glob("demo/*train*"))
