"""`python -m reasoning_sae publish`: a train run's SAEs as a folder in SAELens' hub layout with a model card, which
loads in SAELens (from disk, and from a hub cache as `SAE.from_pretrained(repo, sae_id)`) and here, encoding as the
trained SAE does; bad input is one line, exit 2, nothing written."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reasoning_sae import cli
from reasoning_sae.artifacts import write_json
from reasoning_sae.errors import UserError
from reasoning_sae.hub_release import PUBLISHED, sae_ids
from reasoning_sae.sae import SparseAutoencoder
from tests.helpers import random_sae, tiny
from tests.hub import put_in_hf_cache

REPO = Path(__file__).resolve().parents[1]
METRICS = {"metrics/l0": 12.5, "metrics/explained_variance": 0.71, "metrics/ce_loss_score": 0.93,
           "metrics/kl_div_score": 0.88, "details/n_training_tokens": 12800}


def fake_run(train: Path, extra: dict[str, str] | None = None) -> dict[str, SparseAutoencoder]:
    """A train stage folder as the stage writes it: sae/ (with its card), metrics.json, meta.json, config.yaml, and
    saes/<name>/ for `extra` ({name: hook}). Returns the SAEs by folder name."""
    saes = {}
    for seed, (name, hook) in enumerate({"sae": "blocks.2.hook_resid_post", **(extra or {})}.items()):
        sae = random_sae(d_in=32, d_sae=24, apply_b_dec=seed == 1, seed=seed)
        sae.cfg.metadata.update(hook_name=hook, model_name="smollm2-135m-instruct")
        folder = train / "sae" if name == "sae" else train / "saes" / name / "sae"
        stats = {"sparsity": torch.linspace(-3, -1, 24), "max_activation": torch.linspace(1, 2, 24)}
        sae.save(folder, feature_stats=stats)
        (folder / "README.md").write_text(f"---\nlibrary_name: saelens\n---\n# the train stage's card of {name}\n")
        write_json(folder.parent / "metrics.json", {**METRICS, "metrics/l0": 10.0 + seed})
        saes[name] = sae
    write_json(train / "meta.json", {"fingerprint": "f1nger", "git_commit": "c0ffee", "lock_sha256": "10ck"})
    (train / "config.yaml").write_text(
        "experiment_name: demo\ndata:\n  sources:\n"
        "    reasoning: {path: open-thoughts/OpenThoughts-114k, fraction: 0.5}\n"
        "    chat: {path: lmsys/lmsys-chat-1m, fraction: 0.5}\n    unused: {path: org/unused, fraction: 0}\n")
    return saes


def publish(*args: str) -> int:
    return cli.main(["publish", *map(str, args)])


def front_matter(readme: Path) -> dict:
    from huggingface_hub import ModelCard

    return ModelCard.load(readme).data.to_dict()


def x_BD() -> torch.Tensor:
    return torch.randn(6, 32, generator=torch.Generator().manual_seed(1)) * 3


def test_publish_writes_sae_lens_folders_and_a_card_that_load_and_encode_as_trained(tmp_path, capsys):
    from sae_lens import SAE

    train = tmp_path / "artifacts" / "demo" / "train"
    saes = fake_run(train, {"layer4": "blocks.4.hook_resid_post", "l1_5": "blocks.2.hook_resid_post"})
    out = tmp_path / "release"
    assert publish(train, "--out", out, "--repo-id", "me/smol-saes") == 0
    assert "hf upload me/smol-saes" in capsys.readouterr().out
    # one folder per SAE id: the hook name, or the saes/ name where the main SAE already has that hook
    ids = {"blocks.2.hook_resid_post": "sae", "blocks.4.hook_resid_post": "layer4", "l1_5": "l1_5"}
    assert sorted(p.name for p in out.iterdir()) == sorted([*ids, "README.md", PUBLISHED])
    x = x_BD()
    for sae_id, name in ids.items():
        source = train / "sae" if name == "sae" else train / "saes" / name / "sae"
        files = ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "README.md")
        assert sorted(p.name for p in (out / sae_id).iterdir()) == sorted(files)
        assert all((out / sae_id / f).read_bytes() == (source / f).read_bytes() for f in files)
        expected = saes[name].encode(x)
        assert expected.count_nonzero() > 0
        ours = SparseAutoencoder.load(out / sae_id)
        theirs = SAE.load_from_disk(out / sae_id)
        torch.testing.assert_close(ours.encode(x), expected, rtol=0, atol=0)
        torch.testing.assert_close(theirs.encode(x), expected, rtol=1e-6, atol=1e-6)
    meta = front_matter(out / "README.md")
    assert meta["library_name"] == "saelens" and meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["datasets"] == ["open-thoughts/OpenThoughts-114k", "lmsys/lmsys-chat-1m"]
    by_id = {s["sae_id"]: s for s in meta["saes"]}
    assert by_id.keys() == ids.keys() and by_id["blocks.4.hook_resid_post"]["hook_name"] == "blocks.4.hook_resid_post"
    assert by_id["blocks.4.hook_resid_post"]["l0"] == 11.0 and by_id["l1_5"]["l0"] == 12.0
    assert by_id["l1_5"] | {"l0": 0} == {
        "sae_id": "l1_5", "model": "smollm2-135m-instruct", "hook_name": "blocks.2.hook_resid_post",
        "architecture": "standard", "d_in": 32, "d_sae": 24, "training_tokens": 12800, "l0": 0,
        "explained_variance": 0.71, "ce_loss_recovered": 0.93, "kl_recovered": 0.88}
    card = (out / "README.md").read_text()
    row = ("| `blocks.4.hook_resid_post` | smollm2-135m-instruct | `blocks.4.hook_resid_post` | standard | 24 | "
           "12,800 | 11.0 | 71.0% | 93.0% | 88.0% |")
    assert row in card
    assert all(word in card for word in ("c0ffee", "10ck", "f1nger", 'SAE.from_pretrained("me/smol-saes", '))
    record = json.loads((out / PUBLISHED).read_text())
    assert record["sae_ids"] == ids and record["repo_id"] == "me/smol-saes" and record["trained_commit"] == "c0ffee"


def test_the_cards_usage_snippets_run_from_a_hub_cache(tmp_path, monkeypatch):
    """Every ```python block of the card, run as written against the published folder put in an offline HF cache as
    the repo: SAE.from_pretrained(repo, sae_id), snapshot_download + SparseAutoencoder.load and SAE.load_from_disk."""
    from huggingface_hub import constants

    saes = fake_run(tmp_path / "train")
    assert publish(tmp_path / "train", "--out", tmp_path / "release", "--repo-id", "me/smol-saes") == 0
    hub = tmp_path / "hub"
    put_in_hf_cache(hub, "me/smol-saes", tmp_path / "release")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    blocks = re.findall(r"```python\n(.*?)```", (tmp_path / "release" / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 2
    x, expected = x_BD(), saes["sae"].encode(x_BD())
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
        for name in ("sae", "sae_lens_sae"):
            if name in namespace:
                torch.testing.assert_close(namespace[name].encode(x), expected, rtol=1e-6, atol=1e-6)
    assert type(namespace["sae"]).__module__.startswith("reasoning_sae")  # the second block loads with ours


def test_publish_by_experiment_name_reads_paths_artifacts_and_replaces_its_own_previous_publish(tmp_path, capsys):
    fake_run(tmp_path / "elsewhere" / "exp1" / "train")
    assert publish("exp1", "--force", f"paths.artifacts={tmp_path / 'elsewhere'}") == 0  # options, then overrides
    out = tmp_path / "elsewhere" / "exp1" / "publish"
    assert "hf upload your-hf-name/reasoning-sae-demo" in capsys.readouterr().out  # the placeholder repo id
    first = json.loads((out / PUBLISHED).read_text())["created"]
    (out / "stray.txt").write_text("from an older publish")
    assert publish(tmp_path / "elsewhere" / "exp1", "--repo-id", "me/again") == 0  # the experiment folder, as a path
    assert not (out / "stray.txt").exists() and json.loads((out / PUBLISHED).read_text())["repo_id"] == "me/again"
    assert json.loads((out / PUBLISHED).read_text())["created"] >= first
    assert sorted(p.name for p in out.parent.iterdir()) == ["publish", "train"]


def test_sae_ids_are_hook_names_unless_a_hook_is_shared():
    assert sae_ids(["blocks.2.hook_resid_post", "blocks.4.hook_resid_post"], ["sae", "deep"]) == [
        "blocks.2.hook_resid_post", "blocks.4.hook_resid_post"]
    assert sae_ids(["b.2", "b.2", "b.2"], ["sae", "x", "y"]) == ["b.2", "x", "y"]
    assert sae_ids(["b.2", "b.2"], ["x", "y"]) == ["x", "y"]
    assert sae_ids([None], ["sae"]) == ["sae"]
    with pytest.raises(UserError, match="rename their saes/<name>/ folders"):
        sae_ids(["b.2", "b.2"], ["sae", "b.2"])


def _no_sae(train: Path) -> None:
    fake_run(train)
    for folder in (train / "sae", train / "saes"):
        if folder.exists():
            __import__("shutil").rmtree(folder)


BAD = [  # (id, how the run is broken, argv after `publish` ({train}, {tmp}), a fragment of the one line)
    ("no SAE", _no_sae, ["{train}"], "holds no SAE (no sae/cfg.json"),
    ("no metrics", lambda t: (fake_run(t), (t / "metrics.json").unlink()), ["{train}"], "has no metrics.json"),
    ("member without metrics", lambda t: (fake_run(t, {"deep": "blocks.3.hook_resid_post"}),
                                          (t / "saes" / "deep" / "metrics.json").unlink()), ["{train}"],
     "has no metrics"),
    ("corrupt metrics", lambda t: (fake_run(t), (t / "metrics.json").write_text("[1,")), ["{train}"],
     "metrics.json cannot be read"),
    ("damaged SAE", lambda t: (fake_run(t), (t / "sae" / "sae_weights.safetensors").write_bytes(b"x")), ["{train}"],
     "unreadable sae_weights.safetensors"),
    ("out not a publish", fake_run, ["{train}", "--out", "{tmp}/mine"], "is not a previous publish"),
    ("out inside the run", fake_run, ["{train}", "--out", "{train}/sae"], "would overwrite the train run"),
    ("out holding the run", fake_run, ["{train}", "--out", "{tmp}/artifacts", "--force"],
     "would overwrite the train run"),
    ("repo id", fake_run, ["{train}", "--repo-id", "no owner"], "is not a hub repo id"),
    ("repo id without owner", fake_run, ["{train}", "--repo-id", "name"], "has no owner"),
    ("unknown experiment", fake_run, ["nope", "paths.artifacts={tmp}/artifacts"], "no train artifact at"),
    ("not a folder", fake_run, ["./nope/train"], "is not a folder"),
    ("unknown option", fake_run, ["{train}", "--bogus"], "unrecognized arguments: --bogus"),
    ("two runs", fake_run, ["{train}", "{train}"], "publish takes one run"),
    ("bad override", fake_run, ["demo", "paths.artefacts=x"], "no setting paths.artefacts exists"),
]


@pytest.mark.parametrize("breaks, argv, fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys, breaks, argv, fragment):
    train = tmp_path / "artifacts" / "demo" / "train"
    breaks(train)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert publish(*(a.format(train=train, tmp=tmp_path) for a in argv)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_force_replaces_a_folder_that_is_not_a_publish(tmp_path):
    fake_run(tmp_path / "train")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert publish(tmp_path / "train", "--out", tmp_path / "mine", "--force") == 0
    assert (tmp_path / "mine" / PUBLISHED).is_file() and not (tmp_path / "mine" / "notes.txt").exists()


def test_a_sparsity_file_without_the_sparsity_tensor_is_left_out(tmp_path):
    """SAE.from_pretrained reads `sparsity` from sparsity.safetensors whenever the file is there."""
    fake_run(tmp_path / "train")
    random_sae(d_in=32, d_sae=24).save(tmp_path / "train" / "sae", feature_stats={"max_activation": torch.ones(24)})
    assert publish(tmp_path / "train", "--out", tmp_path / "out") == 0
    (sae_id,) = json.loads((tmp_path / "out" / PUBLISHED).read_text())["sae_ids"]
    assert not (tmp_path / "out" / sae_id / "sparsity.safetensors").exists()
    assert "left out" in json.loads((tmp_path / "out" / PUBLISHED).read_text())["notes"][0]


def test_the_readme_publish_commands_run_as_written(tmp_path):
    """The README's `publish` command, run in a folder with a train run at artifacts/demo/train, and its `hf upload`
    command naming the repo id and the folder that command wrote."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Publishing an SAE", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
                for line in block.splitlines() if line.strip()]
    (publish_line,) = [c for c in commands if " publish " in c]
    (upload,) = [c for c in commands if c.startswith("hf upload")]
    fake_run(tmp_path / "artifacts" / "demo" / "train")
    words = shlex.split(publish_line)
    assert words[:4] == [".venv/bin/python", "-m", "reasoning_sae", "publish"]
    run = subprocess.run([sys.executable, *words[1:]], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[-1] == f"upload it with: {upload}"
    assert (tmp_path / shlex.split(upload)[3] / "blocks.2.hook_resid_post" / "cfg.json").is_file()


def test_a_tiny_train_stage_run_publishes_and_loads_in_sae_lens_encoding_as_trained(compose, tiny_llama_dir, tmp_path):
    """The train stage's own output (its card, metrics and provenance), on the tiny random Llama, by experiment name."""
    from sae_lens import SAE

    from reasoning_sae.stages import corpus, train

    cfg = compose("train", tiny(tiny_llama_dir))
    corpus.run(cfg)
    out = train.run(cfg)
    assert publish("demo", f"paths.artifacts={tmp_path / 'artifacts'}", "--repo-id", "me/tiny") == 0
    release = out.parent / "publish"
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(2))
    expected = SparseAutoencoder.load(out / "sae").encode(x)
    assert expected.count_nonzero() > 0
    sae_id = "blocks.2.hook_resid_post"
    torch.testing.assert_close(SAE.load_from_disk(release / sae_id).encode(x), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(SparseAutoencoder.load(release / sae_id).encode(x), expected, rtol=0, atol=0)
    metrics, meta = (json.loads((out / name).read_text()) for name in ("metrics.json", "meta.json"))
    (entry,) = front_matter(release / "README.md")["saes"]
    assert entry["l0"] == round(metrics["metrics/l0"], 6) and entry["training_tokens"] == 1280
    assert entry["ce_loss_recovered"] == round(metrics["metrics/ce_loss_score"], 6)
    card = (release / "README.md").read_text()
    assert meta["git_commit"] in card and meta["lock_sha256"] in card
    assert (release / sae_id / "README.md").read_bytes() == (out / "sae" / "README.md").read_bytes()
