"""A miniature of the paper run: the paper's experiments with only sizes, the model and the data changed.

Sizes are cut down; the model is the embedded one; the data are local copies in the hub schemas built from the
real files in ../shared/data (DeepSeek-R1 traces as OpenThoughts-114k `metadata` rows, Arena-Hard chats as
LMSYS-Chat-1M conversations, the real MATH-500, AIME 2024 and GPQA-Diamond). Everything else is the experiment's
own configuration: engine=vllm, DDP, the word ban, the diffing SAEs."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import real_chat_rows, shared_data, write_jsonl

REPO = Path(__file__).resolve().parents[2]
TRACES = "reasoning_traces/mip_overthinking/response/{}/normal/deepseekR1/response.json"


def openthoughts_rows() -> list[dict]:
    """DeepSeek-R1 traces on MATH-500 and GSM8K problems in the OpenThoughts-114k `metadata` schema."""
    rows = []
    for kind in ("math", "gsm8k"):
        for item in json.loads(shared_data(TRACES.format(kind)).read_text()):
            reasoning, _, solution = item["deepseek-reasoner (question)"].partition("</think>")
            rows.append({"problem": item["question"], "deepseek_reasoning": reasoning.strip(),
                         "deepseek_solution": solution.strip(), "ground_truth_solution": str(item.get("solution", item.get("answer"))),
                         "domain": "math", "source": kind, "test_cases": None, "starter_code": None})
    return rows


def slimpajama_rows() -> list[dict]:
    """General web-like text in SlimPajama's schema ({text}): the Arena-Hard questions and GPT-4's answers (no
    SlimPajama sample is in ../shared/data; this is the base-model data of the diffing stages S and M)."""
    rows = []
    for chat in real_chat_rows():
        rows.append({"text": "\n\n".join(m["content"] for m in chat["conversation"]),
                     "meta": {"redpajama_set_name": "arena_hard"}})
    return rows


def local_data(folder: Path) -> tuple[str, ...]:
    """The data overrides: local copies of the hub datasets and benchmarks."""
    folder.mkdir(parents=True, exist_ok=True)
    reasoning = write_jsonl(folder / "openthoughts_metadata.jsonl", openthoughts_rows())
    chat = write_jsonl(folder / "lmsys_chat.jsonl", real_chat_rows())
    web = write_jsonl(folder / "slimpajama.jsonl", slimpajama_rows())
    files = {"aime24_nofigures": shared_data("aime24/test.jsonl"), "math500": shared_data("math500/test.jsonl"),
             "gpqa_diamond_openai": shared_data("gpqa_diamond/gpqa_diamond.csv")}
    return (f"data.sources.reasoning.path={reasoning}", f"data.sources.chat.path={chat}",
            f"data.sources.slimpajama.path={web}",
            "+benchmark.data_files={" + ",".join(f"{k}:{v}" for k, v in files.items()) + "}")


MODEL = ("model=smollm2-135m-instruct", "model.layer=19",
         *(f"diff.stagewise.stages.{s}.model=smollm2-135m-instruct" for s in "SDMF"))
SIZES = ("data.context_size=128", "data.training_tokens=null", "data.scoring.docs=24", "data.scoring.sequences=48",
         "data.num_proc=1", "benchmark.limit=1", "benchmark.repeats=2", "benchmark.max_gen_toks=16",
         "benchmark.max_model_len=2048", "benchmark.word_ban.seeds=[0]",
         "benchmark.budget_forcing.enabled=false")
# experiment=paper's SAE and diffing at miniature size (the paper's own lr, schedule and init), trained with DDP on
# two CPU processes as trainer=ddp does on GPUs.
TRAIN = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "sae.d_sae=512", "sae.training_tokens=20480",
         "sae.batch_size_tokens=256", "sae.n_batches_in_buffer=4", "sae.store_batch_size_prompts=4",
         "sae.eval_sequences=4", "sae.log_every=10", "score.top_k=16", "steering.top_n=2",
         "diff.crosslayer.layers=[17,21]", "diff.crosslayer.sequences=8", "diff.random_features=20")


def run(args, env: dict, timeout: int = 1800) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", **env}
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env, cwd=REPO,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args[:4])} failed:\n{result.stderr[-4000:]}"
    return result
