"""Every bad input a user can give, at every stage, is one line `error: ...` naming the fix, exit 2, before any model
loads, with nothing written: no artifact, no temporary, no Hydra log dir."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reasoning_sae import artifacts

ARTIFACTS = "artifacts"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A scratch HOME with bad files, a small SAE of the demo model, and the upstream artifacts later stages read
    (written by hand: only their existence and provenance matter before a model loads)."""
    from hydra import compose, initialize_config_dir

    from reasoning_sae.models.config import conf_dir
    from reasoning_sae.sae import SparseAutoencoder
    from tests.helpers import random_sae

    root = tmp_path_factory.mktemp("bad_inputs")
    bad = root / "bad"
    bad.mkdir()
    (bad / "garbage.jsonl").write_text('not json at all\n{"a":')
    (bad / "garbage.parquet").write_bytes(os.urandom(300))
    (bad / "utf16.jsonl").write_bytes("{}".encode("utf-16"))
    (bad / "not_a_folder").write_text("a file")
    (bad / "math500.jsonl").write_text("problem,answer\n1+1,2\n")
    (bad / "evil.yaml").write_text("task: evil\n")
    random_sae().save(root / "sae")
    topk = SparseAutoencoder(random_sae().cfg.replace(architecture="topk", k=4))
    topk.save(root / "topk_sae")
    exp = root / ARTIFACTS / "demo"
    for stage in ("corpus", "vocab", "score", "interpret"):
        (exp / stage).mkdir(parents=True)
        (exp / stage / "meta.json").write_text(json.dumps({"fingerprint": stage}))
    (exp / "corpus" / "score").mkdir()
    (exp / "vocab" / "vocabulary.json").write_text('["wait"]')
    (exp / "score" / "top_features.json").write_text(json.dumps({"features": [3, 5]}))
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[f"paths.artifacts={root / ARTIFACTS}", *local_sae(root)])
    (exp / "interpret" / "sae.json").write_text(json.dumps({"fingerprint": artifacts.run_sae(cfg).fingerprint}))
    (exp / "interpret" / "contexts.json").write_text(json.dumps({"3": [{"sequence": 0, "position": 1, "activation": 1}],
                                                                 "5": []}))
    shutil.copytree(exp, root / ARTIFACTS / "ok")
    held_out(root / ARTIFACTS / "ok", [[1, 2, 3, 4]])  # the falsify stage's chat: none in `demo`
    (exp / "interpret" / "f_max.json").write_text("{3: 1.0,")  # corrupt in `demo`, whole in `ok`
    (root / ARTIFACTS / "ok" / "interpret" / "f_max.json").write_text('{"3": 1.0}')
    return root


def held_out(exp: Path, sequences: list[list[int]]) -> None:
    import datasets

    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))})
    datasets.Dataset.from_dict({"input_ids": sequences}, features=features).save_to_disk(str(exp / "corpus" / "heldout"))


def local_sae(root: Path) -> tuple[str, ...]:
    return ("sae_source=local", f"sae_source.path={root / 'sae'}")


# (id, argv after `python -m reasoning_sae`, a fragment the one line holds); {root} is the scratch folder
CASES = [
    # overrides that do not compose or name nothing
    ("unknown stage", ["trian"], "unknown stage 'trian'"),
    ("unknown group option", ["corpus", "model=smollm3"], "unknown model 'smollm3'"),
    ("misspelled key", ["corpus", "data.contxt_size=5"], "no setting data.contxt_size exists"),
    ("override syntax", ["corpus", "data.context_size=[1,"], "the overrides do not compose"),
    ("misspelled key in a sweep", ["corpus", "-m", "data.contxt_size=5,6"], "no setting data.contxt_size"),
    # values of the wrong type or range
    ("non-numeric context", ["corpus", "data.context_size=abc"], "data.context_size='abc'"),
    ("context too small", ["corpus", "data.context_size=1"], "a whole number >= 2"),
    ("separator", ["corpus", "data.separator=tab"], "unknown data.separator 'tab'"),
    ("seed", ["corpus", "seed=abc"], "seed='abc'"),
    ("force not a flag", ["corpus", "force=maybe"], "force='maybe'"),
    ("score batch 0", ["score", "score.batch_sequences=0"], "score.batch_sequences=0"),
    ("score q", ["score", "score.q=1.5"], "score.q=1.5"),
    ("score window", ["score", "score.window=[1]"], "score.window=[1]"),
    ("score alpha", ["score", "score.alpha=-1"], "score.alpha=-1"),
    ("score alpha nan", ["score", "score.alpha=nan"], "score.alpha=nan"),
    ("interpret top_n", ["interpret", "interpret.top_n=0"], "interpret.top_n=0"),
    ("interpret context", ["interpret", "interpret.context=[24]"], "interpret.context"),
    ("steering mode", ["evaluate", "steering.mode=bogus"], "unknown steering.mode 'bogus'"),
    ("steering positions", ["evaluate", "steering.positions=everywhere"], "unknown steering.positions 'everywhere'"),
    ("steering gammas", ["evaluate", "steering.gammas=[abc]"], "steering.gammas[0]='abc'"),
    ("steering features", ["evaluate", "steering.features=[abc]"], "steering.features=['abc']"),
    ("steering f_max", ["evaluate", "steering.f_max=-3"], "steering.f_max=-3"),
    ("benchmark engine", ["evaluate", "benchmark.engine=tpu"], "unknown benchmark.engine 'tpu'"),
    ("benchmark repeats", ["evaluate", "benchmark.repeats=0"], "benchmark.repeats=0"),
    ("benchmark batch", ["evaluate", "benchmark.batch_size=0"], "benchmark.batch_size=0"),
    ("word-ban scope", ["evaluate", "benchmark.word_ban.scope=some"], "unknown benchmark.word_ban.scope 'some'"),
    ("budget forcing longer than the budget", ["evaluate", "benchmark.budget_forcing.min_thinking_tokens=200"],
     "benchmark.budget_forcing.min_thinking_tokens=200 is not below benchmark.max_gen_toks=128: a sample can never "
     "think that long; lower benchmark.budget_forcing.min_thinking_tokens or raise benchmark.max_gen_toks"),
    ("budget forcing word", ["evaluate", "benchmark.budget_forcing.word=' '"], "benchmark.budget_forcing.word=' '"),
    ("autointerp temperature", ["autointerp", "autointerp.temperature=-1"], "autointerp.temperature=-1"),
    ("diff threshold", ["diff", "diff.threshold=2"], "diff.threshold=2"),
    ("falsify alpha", ["falsify", "falsify.alpha=2"], "falsify.alpha=2"),
    ("vocab top_k", ["vocab", "vocab.top_k=0"], "vocab.top_k=0"),
    ("vocab threshold", ["vocab", "vocab.general_frequency_threshold=2"], "vocab.general_frequency_threshold=2"),
    ("figures examples", ["figures", "figures.examples=-1"], "figures.examples=-1"),
    ("bootstrap resamples", ["figures", "figures.uncertainty.resamples=50"],
     "figures.uncertainty.resamples=50: give a whole number >= 100"),
    ("reproduce skip", ["reproduce", "skip_stages=[bogus]"], "not stages"),
    ("sae lr nan", ["train", "sae.lr=nan"], "sae.lr"),
    ("sae lr negative", ["train", "sae.lr=-1"], "sae.lr"),
    ("sae lr text", ["train", "sae.lr=abc"], "sae.lr"),
    ("sae lr at reproduce's start", ["reproduce", "sae.lr=0"], "sae.lr=0: give a finite number > 0"),
    ("matryoshka widths not increasing", ["train", "sae=matryoshka", "sae.matryoshka_widths=[512,128,9216]"],
     "matryoshka_widths=[512, 128, 9216] is not strictly increasing"),
    ("matryoshka widths short of d_sae", ["train", "sae=matryoshka", "sae.d_sae=4096"], "does not end at d_sae=4096"),
    ("batchtopk k above d_sae", ["train", "sae=batchtopk", "sae.d_sae=32"], "sae.k=64 is more than d_sae=32"),
    ("multi-SAE duplicate names", ["train", "train.saes=[{{name:a}},{{name:a}}]"], "train.saes names 'a' twice"),
    ("multi-SAE unknown setting", ["train", "train.saes=[{{name:a,colour:red}}]"],
     "train.saes entry a: unknown sae setting(s) ['colour']"),
    ("multi-SAE layer out of range", ["train", "train.saes=[{{name:a,layer:40}}]"],
     "train.saes entry a: layer=40 is out of range: give 0-29"),
    # the environment
    ("artifacts in /proc", ["corpus", "paths.artifacts=/proc/x"], "cannot be written"),
    ("artifacts under a file", ["corpus", "paths.artifacts={root}/bad/not_a_folder/x"], "is a file, not a folder"),
    ("artifacts read-only", ["corpus", "paths.artifacts=/sys/kernel/x"], "cannot be written"),
    ("cuda without CUDA", ["corpus", "model.device=cuda"], "model.device=auto or cpu"),
    # inputs: data files, benchmarks, upstream artifacts, tasks, endpoints
    ("garbage jsonl source", ["corpus", "data.sources.chat.path={root}/bad/garbage.jsonl"], "cannot be read as .jsonl"),
    ("garbage parquet source", ["corpus", "data.sources.chat.path={root}/bad/garbage.parquet"], "cannot be read"),
    ("utf-16 source", ["corpus", "data.sources.chat.path={root}/bad/utf16.jsonl"], "cannot be read"),
    ("missing source", ["corpus", "data.sources.chat.path={root}/nope.jsonl"], "does not exist"),
    ("source format", ["corpus", "data.sources.chat.format=weird"], "format"),
    ("no upstream", ["train", "experiment_name=fresh"], "run the corpus stage first"),
    ("local SAE missing", ["evaluate", "sae_source=local", "sae_source.path={root}/nope"], "nope"),
    ("task as a path", ["evaluate", "benchmark.tasks=[{root}/bad/evil]"], "not paths"),
    ("unknown task", ["evaluate", "benchmark.tasks=[math5000]"], "unknown benchmark task 'math5000'"),
    ("benchmark file not JSON", ["evaluate", "benchmark=paper", "benchmark.tasks=[math500]",
                                 "+benchmark.data_files.math500={root}/bad/math500.jsonl", "steering.baseline=true",
                                 "steering.features=[]"], "is not JSONL"),
    ("benchmark hub offline", ["evaluate", "benchmark=paper", "benchmark.tasks=[math500]", "steering.features=[]"],
     "the Hugging Face Hub is unreachable"),
    ("feature outside the SAE", ["evaluate", "steering.features=[99999]", "LOCAL_SAE"], "99999"),
    ("corrupt f_max", ["evaluate", "steering.features=[3]", "LOCAL_SAE"], "f_max.json is corrupt"),
    ("decoder-norm folding of a topk SAE", ["score", "score=released_code", "sae_source=local",
                                            "sae_source.path={root}/topk_sae"],
     "would change which latents a topk SAE selects: use the SAE unfolded (its activations are not rescaled by "
     "decoder norm) (score.fold_decoder_norm=false)"),
    ("clamp on a topk SAE", ["evaluate", "steering.features=[3]", "sae_source=local", "sae_source.path={root}/topk_sae",
                             "experiment_name=ok", "steering.mode=clamp"],
     "steering mode clamp needs each latent's activation from its own pre-activation, which a topk SAE does not give: "
     "use mode=add"),
    ("steering vector name", ["evaluate", "steering.vectors=[meanshift]"], "unknown steering.vectors[0] 'meanshift'"),
    ("vector without features", ["evaluate", "steering.features=[]", "LOCAL_SAE"], "steering.features is empty"),
    ("score before DiffMean", ["evaluate", "steering.features=[3]", "LOCAL_SAE", "experiment_name=ok"],
     "written before DiffMean existed"),
    ("no held-out chat", ["falsify", "LOCAL_SAE"], "held-out chat split is empty"),
    ("feature without contexts", ["falsify", "LOCAL_SAE", "experiment_name=ok"], "features [5] of F_R have no top"),
    ("no explainer", ["autointerp", "LOCAL_SAE"], "no explainer endpoint"),
    ("explainer down", ["autointerp", "LOCAL_SAE", "experiment_name=ok", "autointerp.explainer.base_url=http://127.0.0.1:9/v1",
                        "autointerp.explainer.retries=0", "autointerp.features=[3]", "steering.f_max=1",
                        "interpret.extra_features=[]", "autointerp.scoring.enabled=false"], "cannot reach the explainer"),
    ("no held-out contexts", ["autointerp", "LOCAL_SAE", "experiment_name=ok", "autointerp.features=[3]",
                              "autointerp.explainer.base_url=http://127.0.0.1:9/v1"], "kept no held-out contexts"),
    ("scoring batch 0", ["autointerp", "autointerp.scoring.batch_size=0"], "autointerp.scoring.batch_size=0"),
    # publish (more in tests/test_hub_release.py)
    ("publish without a train run", ["publish", "demo"], "no train artifact at"),
    ("publish a folder without an SAE", ["publish", "{root}/bad"], "holds no SAE"),
]


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("argv,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_line_exit_2_and_writes_nothing(world, tmp_path, argv, fragment):
    if fragment == "model.device=auto or cpu" and __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    if "/sys/kernel" in " ".join(argv) and os.access("/sys/kernel", os.W_OK) and os.geteuid() != 0:
        pytest.skip("/sys/kernel is writable here")
    args = [a.format(root=world) for a in argv]
    if "LOCAL_SAE" in args:
        i = args.index("LOCAL_SAE")
        args[i:i + 1] = local_sae(world)
    before = snapshot(world)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "REASONING_SAE_ARTIFACTS": str(world / ARTIFACTS), "WANDB_MODE": "disabled",
           **{k: v for k, v in os.environ.items() if k.startswith(("REASONING_SAE_CACHE", "XDG_CACHE"))}}
    run = subprocess.run([sys.executable, "-m", "reasoning_sae", *args], capture_output=True, text=True, env=env,
                         cwd=world, timeout=300)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2, run.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-3000:]
    assert fragment in lines[0], lines[0]
    written = snapshot(world) - before
    assert not written, written


def test_the_table_covers_at_least_40_inputs_and_every_stage():
    from reasoning_sae.stages import OPTIONAL, STAGES

    assert len(CASES) >= 40
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"`tests/test_bad_inputs.py` holds {len(CASES)} of them" in readme
    assert {c[1][0] for c in CASES} >= {*STAGES, *OPTIONAL, "reproduce"}


def test_the_cli_checks_a_command_without_importing_torch():
    """A bad override is reported in well under a second: the checks import neither torch nor a stage."""
    code = ("import sys; from reasoning_sae import cli; rc = cli.main(['corpus', 'data.context_size=abc']); "
            "assert rc == 2, rc; heavy = {'torch', 'lightning', 'lm_eval', 'datasets'} & set(sys.modules); "
            "assert not heavy, heavy")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr.startswith("error: data.context_size='abc'")
