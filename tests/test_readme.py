"""The README runs as written. Every shell command of its ```bash blocks and every ```python snippet is either run here
(sizes shrunk only through documented overrides and arguments, in a temporary directory where small stand-ins sit at
the paths the README names), or mapped to the existing test that runs it, or skipped with the reason. A command or
snippet that is in none of these lists fails `test_every_readme_command_is_run_mapped_or_skipped`, so a README
example that is added or changed cannot go untested unnoticed."""

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import SHARED_DATA, needs_vllm

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYTHON = ".venv/bin/python"

# ---------------------------------------------------------------------------------------------------------------------
# What the README holds
# ---------------------------------------------------------------------------------------------------------------------


def readme_blocks(lang: str) -> list[tuple[int, str]]:
    """(line number of the opening fence, text) of every ```<lang> block of the README."""
    blocks, block, start = [], None, 0
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if block is None:
            if line.strip() == f"```{lang}":
                block, start = [], number
            continue
        if line.strip() == "```":
            blocks.append((start, "\n".join(block)))
            block = None
            continue
        block.append(line)
    assert block is None, f"README.md:{start}: a ```{lang} block is never closed"
    return blocks


def readme_commands(marker: str) -> list[str]:
    """The shell commands (continuation lines joined) of the README's ```bash blocks that contain `marker`."""
    commands = []
    for _, text in readme_blocks("bash"):
        commands += [c for c in text.replace("\\\n", " ").splitlines() if marker in c]
    return commands


def command_key(line: str) -> str:
    """A command as its words (quotes and the trailing comment dropped, spaces normalised)."""
    return " ".join(shlex.split(line, comments=True))


def all_readme_commands() -> list[str]:
    """Every distinct shell command of the README's ```bash blocks, as `command_key`s, in order."""
    keys = []
    for _, text in readme_blocks("bash"):
        for line in text.replace("\\\n", " ").splitlines():
            key = command_key(line)
            if key and key not in keys:
                keys.append(key)
    return keys


def readme_snippets() -> dict[str, tuple[int, str]]:
    """Every ```python snippet of the README, by its first line."""
    return {text.splitlines()[0]: (start, text) for start, text in readme_blocks("python")}


# ---------------------------------------------------------------------------------------------------------------------
# Where each one is tested
# ---------------------------------------------------------------------------------------------------------------------

DEMO_ARGS = "sae=artifacts/demo/train/sae,features=6719,gamma=2,f_max=artifacts/demo/interpret/f_max.json"
LM_EVAL_HF = (f"{PYTHON} -m reasoning_sae.lm_eval --model sae_steered --model_args pretrained=smollm2-135m-instruct,"
              f"{DEMO_ARGS} --tasks reasoning_demo --apply_chat_template --limit 8 --log_samples --output_path out/")
LM_EVAL_VLLM = (f"{PYTHON} -m reasoning_sae.lm_eval --model sae_steered_vllm --model_args "
                f"pretrained=smollm2-135m-instruct,dtype=float32,{DEMO_ARGS},max_model_len=2048 --tasks reasoning_demo "
                "--apply_chat_template --limit 2 --log_samples --output_path out/")
CORPUS = [f"{PYTHON} -m reasoning_sae corpus data.context_size=128 data.sources.chat.fraction=0.3 "
          "data.sources.reasoning.fraction=0.7",
          f"{PYTHON} -m reasoning_sae corpus --cfg job",
          f"{PYTHON} -m reasoning_sae corpus -m data.context_size=128,256"]
EVALUATE_LOCAL_COPY = (f"{PYTHON} -m reasoning_sae evaluate benchmark=paper benchmark.engine=hf benchmark.limit=20 "
                       "+benchmark.data_files.math500=/data/math500/test.jsonl benchmark.tasks=[math500]")

RUN = {  # command -> the test of this file that runs it
    CORPUS[0]: "test_the_readme_corpus_commands_run",
    CORPUS[1]: "test_the_readme_corpus_commands_run",
    CORPUS[2]: "test_the_readme_corpus_commands_run",
    LM_EVAL_HF: "test_the_readme_sae_steered_command_runs_on_the_demo",
    LM_EVAL_VLLM: "test_the_readme_sae_steered_vllm_command_runs_on_the_demo",
    EVALUATE_LOCAL_COPY: "test_the_readme_local_copy_evaluation_runs_with_auto_batches_on_a_cpu",
}

STAGE_TESTS, TRAIN_TESTS = "tests/stages/test_evaluate.py", "tests/stages/test_train.py"
MAPPED = {  # command -> the existing test that runs it (or its code path at a size a test affords), file::name
    "make reproduce": "tests/test_cli.py::test_reproduce_runs_the_stages_then_skips_them",
    f"{PYTHON} -m reasoning_sae train":
        f"{TRAIN_TESTS}::test_train_stage_writes_a_sae_lens_directory_metrics_and_plots",
    f"{PYTHON} -m reasoning_sae train -m sae.l1_coefficient=1,5":
        f"{TRAIN_TESTS}::test_multirun_gives_one_run_directory_and_one_wandb_run_per_job",
    f"{PYTHON} -m reasoning_sae train resume=true":
        f"{TRAIN_TESTS}::test_resume_after_sigkill_ends_with_the_same_weights_and_log",
    f"{PYTHON} -m reasoning_sae train trainer=ddp trainer.accelerator=cpu trainer.devices=2":
        "tests/train/test_ddp.py::test_ddp_trains_the_global_batch_on_disjoint_shards_like_one_process",
    f"{PYTHON} -m reasoning_sae train -m hydra/launcher=submitit_local sae.l1_coefficient=1,5":
        "tests/test_launchers.py::test_submitit_local_runs_each_job_of_a_train_sweep_in_its_own_process",
    f"{PYTHON} -m reasoning_sae evaluate":
        f"{STAGE_TESTS}::test_evaluate_writes_lm_eval_results_tables_and_reuses_cells",
    f"{PYTHON} -m reasoning_sae evaluate -m steering.features=[6719],[7556] steering.gammas=[1.0],[3.0]":
        f"{STAGE_TESTS}::test_a_multirun_job_writes_its_own_table_and_shares_cells",
    f"{PYTHON} -m reasoning_sae evaluate steering.features=[6719,7556] steering.gammas=[1.0,3.0]":
        f"{STAGE_TESTS}::test_a_multirun_job_writes_its_own_table_and_shares_cells",
    f"{PYTHON} -m reasoning_sae evaluate benchmark.engine=vllm":
        f"{STAGE_TESTS}::test_the_grid_on_vllm_gives_the_hf_tables_from_one_engine_and_caches_its_cells",
    f"{PYTHON} -m reasoning_sae autointerp autointerp.explainer.base_url=http://localhost:8000/v1 "
    "autointerp.explainer.model=Qwen/Qwen2.5-7B-Instruct autointerp.scoring.examples=20":
        "tests/stages/test_autointerp.py::test_autointerp_writes_generations_descriptions_groups_and_table",
    "OPENAI_BASE_URL=http://localhost:8000/v1 REASONING_SAE_EXPLAINER_MODEL=Qwen/Qwen2.5-7B-Instruct make reproduce":
        "tests/test_cli.py::test_reproduce_runs_autointerp_before_figures_only_when_an_explainer_endpoint_is_given",
    f"{PYTHON} -m reasoning_sae falsify":
        "tests/stages/test_falsify.py::test_falsify_stage_writes_verdicts_for_f_r_and_random_features",
    "make figures": "tests/figures/test_figures.py::test_every_figure_and_table_renders_and_verifies",
    "make verify": "tests/figures/test_figures.py::test_every_figure_and_table_renders_and_verifies",
    "make verify EXPERIMENT=paper": "tests/figures/test_figures.py::test_paper_experiment_is_checked_against_the_paper",
    f"{PYTHON} -m reasoning_sae publish demo --repo-id your-hf-name/smollm2-reasoning-sae":
        "tests/test_hub_release.py::test_the_readme_publish_commands_run_as_written",
}

GPU = "GPU only (an 8B model; no GPU where the tests run)"
SKIPPED = {  # command -> why no test runs it
    "make test": "the test suite itself",
    "make setup-gpu": f"{GPU}: installs the CUDA builds; its agreement with make setup and the Dockerfile is checked "
                      "by tests/test_docker.py::test_setup_gpu_is_setup_with_vllms_cuda_build",
    "export HF_TOKEN=...": "a hub token: no hub access where the tests run",
    "make reproduce EXPERIMENT=paper_released":
        f"{GPU} and hub downloads; run in miniature by tests/paper/test_miniature.py::test_paper_released_in_miniature "
        "(slow)",
    "make reproduce EXPERIMENT=paper": f"{GPU} and hub downloads; run in miniature by "
                                       "tests/paper/test_miniature.py::test_paper_in_miniature (slow)",
    f"{PYTHON} -m reasoning_sae train experiment=paper trainer=gpu": f"{GPU}: trainer=gpu",
    f"{PYTHON} -m reasoning_sae train -m hydra/launcher=slurm experiment=paper trainer=gpu sae.l1_coefficient=1,5":
        f"{GPU} on a SLURM cluster; the launcher runs a sweep in "
        "tests/test_launchers.py::test_a_slurm_sweep_runs_each_job_through_sbatch",
    f"{PYTHON} -m reasoning_sae evaluate experiment=paper": f"{GPU}: vLLM on the paper's model and benchmarks",
    f"OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... {PYTHON} -m reasoning_sae autointerp "
    "autointerp.explainer.model=gpt-4o": "an OpenAI endpoint and API key; the stage runs against a local stub in "
                                         "tests/stages/test_autointerp.py",
    f"{PYTHON} -m reasoning_sae autointerp autointerp.explainer.base_url=http://localhost:8000/v1":
        "a running OpenAI-compatible server; the stage runs against a local stub in tests/stages/test_autointerp.py",
    "make docker-build": "Docker: no Docker engine where the tests run (tests/test_docker.py lints the Dockerfile)",
    "hf upload your-hf-name/smollm2-reasoning-sae artifacts/demo/publish":
        "a hub token and network; tests/test_hub_release.py::test_the_readme_publish_commands_run_as_written checks "
        "that publish prints this command for the folder it wrote, and the folder loads from a hub cache",
    "make docker-reproduce EXPERIMENT=paper HF_TOKEN=...": f"Docker and {GPU}",
}

SNIPPETS_RUN = {  # first line of a ```python snippet -> the test of this file that runs it
    "from reasoning_sae import load_lm": "test_the_readme_python_snippets_run_in_order",
    "for batch in lm.iter_activations(token_ids, \"blocks.18.hook_resid_post\", batch_sequences=8,":
        "test_the_readme_python_snippets_run_in_order",
    "from reasoning_sae import SparseAutoencoder": "test_the_readme_python_snippets_run_in_order",
    "from reasoning_sae import reason_scores": "test_the_readme_python_snippets_run_in_order",
    "from reasoning_sae import steer": "test_the_readme_python_snippets_run_in_order",
    "from lm_eval import simple_evaluate": "test_the_readme_python_snippets_run_in_order",
}
SNIPPETS_SKIPPED: dict[str, str] = {}

# Sizes shrunk for the run, each a documented argument of the snippet: (first line of the snippet, text, becomes;
# every occurrence).
SNIPPET_SIZES = [
    ("from reasoning_sae import load_lm", "max_new_tokens=64)", "max_new_tokens=8)"),
    ("from reasoning_sae import steer", "max_new_tokens=256)", "max_new_tokens=8)"),
    ("from lm_eval import simple_evaluate", "repeats=4, max_gen_toks=256", "repeats=1, max_gen_toks=8"),
    ("from lm_eval import simple_evaluate", "limit=8)", "limit=2)"),
]


def _test_exists(target: str) -> bool:
    path, name = target.split("::")
    file = ROOT / path
    if not file.is_file():
        return False
    tree = ast.parse(file.read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == name for node in tree.body)


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def unlisted_commands(commands: list[str]) -> list[str]:
    return [c for c in commands if not any(c in listed for listed in (RUN, MAPPED, SKIPPED))]


def test_every_readme_command_is_run_mapped_or_skipped():
    commands = all_readme_commands()
    lists = (RUN, MAPPED, SKIPPED)
    new = f"{PYTHON} -m reasoning_sae score score=released_code"
    assert unlisted_commands([*commands, new]) == unlisted_commands(commands) + [new]  # a new example is caught
    unlisted = unlisted_commands(commands)
    assert not unlisted, ("README commands that no test runs, maps or skips; add each to RUN, MAPPED or SKIPPED in "
                          "tests/test_readme.py:\n" + "\n".join(unlisted))
    stale = [c for listed in lists for c in listed if c not in commands]
    assert not stale, "commands listed in tests/test_readme.py that the README no longer has:\n" + "\n".join(stale)
    twice = [c for c in commands if sum(c in listed for listed in lists) > 1]
    assert not twice, f"commands in more than one list: {twice}"
    here = globals()
    assert all(name.startswith("test_") and callable(here.get(name)) for name in RUN.values()), RUN
    missing = sorted({t for t in MAPPED.values() if not _test_exists(t)})
    assert not missing, f"MAPPED names tests that do not exist: {missing}"
    assert all(reason.strip() for reason in SKIPPED.values())
    targets = _make_targets()
    unknown = [c for c in commands if c.startswith("make ") and c.split()[1] not in targets]
    assert not unknown, f"README make commands without a Makefile target: {unknown}"


def test_every_readme_python_snippet_is_run_or_skipped():
    snippets = readme_snippets()
    unlisted = [first for first in snippets if first not in SNIPPETS_RUN and first not in SNIPPETS_SKIPPED]
    assert not unlisted, ("README python snippets that no test runs or skips; add each (by its first line) to "
                          "SNIPPETS_RUN or SNIPPETS_SKIPPED in tests/test_readme.py: " + repr(unlisted))
    stale = [first for first in (*SNIPPETS_RUN, *SNIPPETS_SKIPPED) if first not in snippets]
    assert not stale, f"snippets listed in tests/test_readme.py that the README no longer has: {stale}"
    assert all(callable(globals().get(name)) for name in SNIPPETS_RUN.values())
    for first, old, _ in SNIPPET_SIZES:
        assert old in snippets[first][1], f"the README snippet {first!r} no longer holds {old!r}"


# ---------------------------------------------------------------------------------------------------------------------
# Running them
# ---------------------------------------------------------------------------------------------------------------------

FEATURE, F_MAX = 6719, 3.84  # the README's feature id and f_max


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REASONING_SAE_ARTIFACTS", "REASONING_SAE_PAPER")}
    return {**env, "WANDB_MODE": "offline"}


def _run(words: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    assert words[0] == PYTHON, words
    return subprocess.run([sys.executable, *words[1:]], capture_output=True, text=True, cwd=cwd, env=_env(),
                          timeout=timeout)


def demo_stand_ins(root: Path) -> Path:
    """`root` with what the README's examples read after `make reproduce`: a random SAE of the demo's shape (9,216
    latents on SmolLM2's blocks.18.hook_resid_post) at artifacts/demo/train/sae and its f_max.json beside it."""
    from tests.helpers import random_sae

    sae = random_sae(d_sae=9216)
    sae.cfg.metadata["hook_name"] = "blocks.18.hook_resid_post"
    sae.save(root / "artifacts" / "demo" / "train" / "sae")
    (root / "artifacts" / "demo" / "interpret").mkdir(parents=True)
    (root / "artifacts" / "demo" / "interpret" / "f_max.json").write_text(json.dumps({str(FEATURE): F_MAX}))
    return root


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    return demo_stand_ins(tmp_path_factory.mktemp("readme_demo"))


def test_the_readme_corpus_commands_run(tmp_path):
    first, show, sweep = (shlex.split(c) for c in CORPUS)
    run = _run(first, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    config = (tmp_path / "artifacts" / "demo" / "corpus" / "config.yaml").read_text()
    assert "context_size: 128" in config and "fraction: 0.3" in config
    run = _run(show, tmp_path)
    assert run.returncode == 0 and "context_size:" in run.stdout, run.stderr[-3000:]
    run = _run(sweep, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = sorted((tmp_path / "artifacts" / "demo" / "multirun" / "corpus").glob("*/*/corpus/meta.json"))
    assert len(jobs) == 2


def test_the_readme_sae_steered_command_runs_on_the_demo(demo_dir):
    assert LM_EVAL_HF in all_readme_commands()
    words = shlex.split(LM_EVAL_HF)
    words[words.index("--limit") + 1] = "2"
    run = _run([*words, "--gen_kwargs", "max_gen_toks=8"], demo_dir)
    assert run.returncode == 0, run.stderr[-3000:]
    if not torch.cuda.is_available():  # lm-eval's default --device cuda:0 became the CPU, and it says so
        assert "no CUDA device here: running on the CPU" in run.stderr
    (results,) = (demo_dir / "out").glob("*/results_*.json")
    assert "pass@1,none" in json.loads(results.read_text())["results"]["reasoning_demo"]
    (samples,) = (demo_dir / "out").glob("*/samples_reasoning_demo_*.jsonl")
    assert len(samples.read_text().splitlines()) == 2


def test_the_lm_eval_cli_reports_a_missing_sae_in_one_line_before_the_model_loads(demo_dir):
    run = _run([PYTHON, "-m", "reasoning_sae.lm_eval", "--model", "sae_steered", "--model_args",
                "pretrained=smollm2-135m-instruct,sae=does/not/exist,features=6719,gamma=2",
                "--tasks", "reasoning_demo", "--limit", "2"], demo_dir, timeout=300)
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.stderr.splitlines()[-1] == ("error: SAE directory does/not/exist does not exist: train one "
                                           "(python -m reasoning_sae train) or fix the path"), run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "Loading weights" not in run.stderr
    assert "Selected Tasks" not in run.stderr  # before lm-eval even reads its tasks


BAD_CLI = [
    pytest.param("sae_steered", "sae=artifacts/demo/train/sae,features=67x9", [],
                 "cannot read '67x9' as a list of int (features)", id="features"),
    pytest.param("sae_steered", "sae=artifacts/demo/train/sae,features=6719,gamma=strong", [],
                 "cannot read 'strong' as a list of float (gamma)", id="gamma"),
    pytest.param("sae_steered", "sae=artifacts/demo/train/sae,features=6719,mode=multiply", [],
                 "unknown steering mode 'multiply'", id="mode"),
    pytest.param("sae_steered", "sae=artifacts/demo/train/sae,features=6719,positions=middle", [],
                 "unknown steering positions 'middle'", id="positions"),
    pytest.param("sae_steered", "sae=artifacts/demo/train/sae,features=6719,f_max=artifacts/none.json", [],
                 "f_max file artifacts/none.json does not exist", id="f_max-file"),
    pytest.param("sae_steered", "sae=artifacts/demo/train/sae,features=6719,f_max=big", [],
                 "cannot read 'big' as a list of float (f_max)", id="f_max-number"),
    pytest.param("sae_steered", "sae=artifacts/demo/train/sae,features=6719,f_max=2,ban=words.json", [],
                 "vocabulary file words.json does not exist", id="ban"),
    pytest.param("sae_steered", "sae=artifacts/demo/train/sae,features=9216", [],
                 "feature index out of range", id="feature-range"),
    pytest.param("sae_steered", "sae=artifacts/demo,features=1", [], "SAE directory artifacts/demo has no cfg.json",
                 id="not-an-sae"),
    pytest.param("sae_steered", "", ["--device", "cuda:0"], "device 'cuda:0' asked for, but",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here"), id="cuda"),
    pytest.param("sae_steered_vllm", "dtype=float32,sae=does/not/exist,features=6719", [],
                 "SAE directory does/not/exist does not exist", id="vllm-sae"),
    pytest.param("sae_steered", "sae=artifacts/demo/train/sae,features=6719,f_max=2,ban=wait,ban_scope=always", [],
                 "unknown ban scope 'always'", id="ban_scope"),
    pytest.param("sae_steered", "sae=artifacts/demo/train/sae,features=6719,f_max=2,dtype=fp8", [],
                 "unknown dtype 'fp8'", id="dtype"),
    pytest.param("sae_steered", "sae=artifacts/demo/train/sae,features=6719", [], "no f_max: pass f_max=",
                 id="no-f_max"),
    pytest.param("sae_steered_vllm", "sae=artifacts/demo/train/sae,features=6719,f_max=2,max_features=many", [],
                 "max_features='many' is not an integer", id="vllm-max_features"),
    pytest.param("sae_steered_vllm", "sae=artifacts/demo/train/sae,features=6719,f_max=2,compiled=maybe", [],
                 "compiled='maybe' is not true or false", id="vllm-compiled"),
]


@pytest.mark.parametrize("model, args, extra, message", BAD_CLI)
def test_the_lm_eval_cli_checks_every_model_arg_before_lm_eval_runs(demo_dir, monkeypatch, capsys, model, args,
                                                                      extra, message):
    from reasoning_sae.lm_eval import __main__ as cli

    def ran(*_args, **_kwargs):
        raise AssertionError("lm-eval ran (or a model loaded) before the model args were checked")

    monkeypatch.chdir(demo_dir)
    monkeypatch.setattr(cli, "register", lambda vllm=False: None)  # sae_steered is registered; vLLM is not imported
    monkeypatch.setattr("lm_eval._cli.HarnessCLI.execute", ran)
    monkeypatch.setattr("reasoning_sae.lm_eval.model.load_lm", ran)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    model_args = ",".join(a for a in ("pretrained=smollm2-135m-instruct", args) if a)
    with pytest.raises(SystemExit) as stop:
        cli.main(["--model", model, "--model_args", model_args, "--tasks", "reasoning_demo", *extra])
    assert stop.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"error: {message}"), err


def test_the_readme_python_snippets_run_in_order(demo_dir, monkeypatch):
    """The Python API and lm-eval snippets, one session as in a notebook, in a directory holding the demo's
    stand-ins; `lm.activations` feeding `sae.encode` with autograd on, and `lm.generate` of a single string."""
    monkeypatch.chdir(demo_dir)
    namespace: dict = {"__name__": "readme"}
    for first, (start, code) in readme_snippets().items():
        for snippet, old, new in SNIPPET_SIZES:
            code = code.replace(old, new) if snippet == first else code
        exec(compile(code, f"{README}:{start + 1}", "exec"), namespace)  # noqa: S102
    lm, sae, acts, feats = (namespace[k] for k in ("lm", "sae", "acts", "feats"))
    assert acts.shape == (*namespace["token_ids"].shape, 576) and not acts.is_inference()
    assert set(namespace["both"]) == {"blocks.6.hook_resid_post", "blocks.18.hook_resid_post"}
    kept = acts[0, 1:][(namespace["token_ids"][0, 1:] > 2)]  # the iterator's rows: no sink position, no special ids
    assert torch.equal(namespace["kept_ND"], kept)
    assert feats.shape == (*acts.shape[:2], 9216) and feats.requires_grad  # autograd on: an SAE can train on it
    sae.encode(lm.activations(namespace["token_ids"], hook="blocks.18.hook_resid_post")).sum().backward()
    assert sae.W_enc.grad is not None and sae.W_enc.grad.abs().sum() > 0
    assert isinstance(namespace["text"], list) and len(namespace["text"]) == 1  # the steer snippet's list
    texts = namespace["texts"]
    assert isinstance(texts, list) and len(texts) == 2 and all(isinstance(t, str) for t in texts)
    single = lm.generate("What is 7 * 8?", max_new_tokens=4)
    assert isinstance(single, str) and single == lm.generate(["What is 7 * 8?"], max_new_tokens=4)[0]
    assert (demo_dir / "my_sae" / "cfg.json").is_file()
    assert "reason_score" in namespace["table"] and len(namespace["table"]) == 9216
    assert "pass@1,none" in namespace["results"]["results"]["reasoning_demo"]


def test_batch_size_auto_on_a_cpu_is_a_fixed_small_batch(tiny_llama_dir):
    from reasoning_sae import load_lm
    from reasoning_sae.lm_eval.model import CPU_AUTO_BATCH_SIZE, SteeredLM

    lm = load_lm(str(tiny_llama_dir), device="cpu")
    assert SteeredLM(pretrained=lm, batch_size="auto").batch_size == CPU_AUTO_BATCH_SIZE == 8
    assert SteeredLM(pretrained=lm, batch_size="auto:4", max_batch_size=2).batch_size == 2
    assert SteeredLM(pretrained=lm, batch_size=3).batch_size == 3


@pytest.mark.slow
def test_the_readme_local_copy_evaluation_runs_with_auto_batches_on_a_cpu(tmp_path):
    """`benchmark=paper benchmark.engine=hf` on a local MATH-500 copy, with the paper benchmark's batch_size=auto
    (which searched for minutes on a CPU), after the corpus and vocab stages, on a user SAE (the stand-in)."""
    math500 = SHARED_DATA / "math500" / "test.jsonl"
    if not math500.is_file():
        pytest.skip(f"real data {math500} is absent (../shared/data is not beside this checkout)")
    demo_stand_ins(tmp_path)
    for stage in ("corpus", "vocab"):
        run = _run([PYTHON, "-m", "reasoning_sae", stage], tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
    words = [w.replace("/data/math500/test.jsonl", str(math500)) for w in shlex.split(EVALUATE_LOCAL_COPY)]
    words = [w.replace("benchmark.limit=20", "benchmark.limit=2") for w in words]
    words += ["sae_source=local", "sae_source.path=artifacts/demo/train/sae", f"steering.features=[{FEATURE}]",
              f"steering.f_max={F_MAX}", "benchmark.repeats=1", "benchmark.max_gen_toks=8",
              "benchmark.word_ban.seeds=[0]", "benchmark.budget_forcing.enabled=false",
              "steering.vectors=[]"]  # no score stage here: DiffMean needs its vector
    run = _run(words, tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "batch_size=auto on a CPU: using 8" in run.stdout + run.stderr
    table = (tmp_path / "artifacts" / "demo" / "evaluate" / "table.md").read_text()
    assert "math500" in table and f"#{FEATURE}" in table


# ---------------------------------------------------------------------------------------------------------------------
# Commands whose runs live elsewhere: the README's words are the ones those tests use
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # the first engine start compiles the model (1-2 min on 2 cores)
@needs_vllm
def test_the_readme_sae_steered_vllm_command_runs_on_the_demo(tmp_path):
    from tests.helpers import random_sae

    (command,) = readme_commands("--model sae_steered_vllm")
    words = shlex.split(command.split("#")[0])
    assert words[:3] == [".venv/bin/python", "-m", "reasoning_sae.lm_eval"], words
    args = words[3:]
    i = args.index("--model_args") + 1
    model_args = dict(kv.split("=", 1) for kv in args[i].split(","))
    assert model_args["pretrained"] == "smollm2-135m-instruct" and model_args["dtype"] == "float32"
    assert model_args["sae"] == "artifacts/demo/train/sae" and int(model_args["max_model_len"]) >= 1024
    random_sae().save(tmp_path / "sae")  # 32 latents on the demo model's blocks.6.hook_resid_post
    model_args.update(sae=str(tmp_path / "sae"), features="5", f_max="3")
    args[i] = ",".join(f"{k}={v}" for k, v in model_args.items())
    args[args.index("--output_path") + 1] = str(tmp_path / "out")
    assert args[args.index("--limit") + 1] == "2" and "--log_samples" in args
    run = subprocess.run([sys.executable, "-m", "reasoning_sae.lm_eval", *args, "--gen_kwargs", "max_gen_toks=8"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    (results,) = (tmp_path / "out").glob("*/results_*.json")
    assert "pass@1,none" in json.loads(results.read_text())["results"]["reasoning_demo"]
    (samples,) = (tmp_path / "out").glob("*/samples_reasoning_demo_*.jsonl")
    assert len(samples.read_text().splitlines()) == 2


def test_the_readme_ddp_command_is_the_one_tests_run():
    from tests.helpers import DDP

    (command,) = readme_commands("trainer.accelerator=cpu")
    words = shlex.split(command.split("#")[0])
    assert words[:4] == [".venv/bin/python", "-m", "reasoning_sae", "train"] and tuple(words[4:]) == DDP


def test_the_readme_submitit_local_sweep_is_the_one_tests_run():
    (command,) = readme_commands("hydra/launcher=submitit_local")
    words = shlex.split(command.split("#")[0])
    assert words == [".venv/bin/python", "-m", "reasoning_sae", "train", "-m", "hydra/launcher=submitit_local",
                     "sae.l1_coefficient=1,5"]
    source = (Path(__file__).parent / "test_launchers.py").read_text()
    assert '"hydra/launcher=submitit_local", "sae.l1_coefficient=1,5"' in source


def test_make_reproduce_runs_the_reproduce_command_that_tests_run():
    makefile = (ROOT / "Makefile").read_text()
    assert "$(PY) -m reasoning_sae reproduce experiment=$(EXPERIMENT)" in makefile
    assert "$(PY) -m reasoning_sae figures experiment=$(EXPERIMENT)" in makefile
    assert "$(PY) -m reasoning_sae.figures.verify $(EXPERIMENT)" in makefile
