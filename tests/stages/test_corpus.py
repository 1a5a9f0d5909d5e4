import json
from collections import Counter
from pathlib import Path

import datasets
import pytest

from reasoning_sae import UserError
from reasoning_sae.stages import corpus
from tests.conftest import shared_data

SMALL = ("data.sources.reasoning.rows=60", "data.sources.chat.rows=80", "data.context_size=64",
         "data.scoring.docs=30")


def _out(cfg) -> Path:
    return Path(cfg.paths.artifacts) / "demo" / "corpus"


def test_demo_corpus_stage_writes_training_mix_scoring_subset_and_pairs(compose):
    cfg = compose("corpus", SMALL)
    out = corpus.run(cfg)
    train, score = datasets.load_from_disk(str(out / "train")), datasets.load_from_disk(str(out / "score"))
    assert {len(ids) for ids in train["input_ids"]} == {64} == {len(ids) for ids in score["input_ids"]}
    counts = Counter(train["source"])
    assert counts["reasoning"] == counts["chat"] > 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["summary"]["score_docs_by_domain"] == {d: 5 for d in
                                                       ("math", "code", "puzzle", "physics", "chemistry", "biology")}
    assert meta["package_version"] and meta["lock_sha256"] and meta["seed"] == 42
    assert (out / "config.yaml").read_text().count("context_size: 64") == 1
    pairs = datasets.Dataset.from_parquet(str(out / "pairs.parquet"))
    assert len(pairs) == 60 and set(pairs.column_names) == {"problem", "reasoning", "solution", "domain"}


def test_rerun_is_skipped_and_a_config_change_rebuilds(compose, caplog):
    out = corpus.run(compose("corpus", SMALL))
    first = (out / "meta.json").read_text()
    with caplog.at_level("INFO"):
        corpus.run(compose("corpus", SMALL))
    assert "up to date" in caplog.text and (out / "meta.json").read_text() == first
    corpus.run(compose("corpus", (*SMALL, "data.context_size=32")))
    assert json.loads((out / "meta.json").read_text())["fingerprint"] != json.loads(first)["fingerprint"]
    assert len(datasets.load_from_disk(str(out / "train"))[0]["input_ids"]) == 32


def test_failed_build_leaves_the_previous_artifact_and_no_partial_files(compose, monkeypatch):
    out = corpus.run(compose("corpus", SMALL))
    before = (out / "meta.json").read_text()

    def boom(*_a, **_k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(corpus, "training_mix", boom)
    with pytest.raises(RuntimeError):
        corpus.run(compose("corpus", (*SMALL, "data.context_size=48")))
    assert (out / "meta.json").read_text() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus"]


@pytest.mark.parametrize(("override", "message"), [
    ("model.name=smollm3", "unknown model 'smollm3'"),
    ("data.context_size=1", "context_size=1 is too small"),
    ("data.sources.chat.fraction=0.7", "fractions sum to 1.2"),
    ("data.separator=tab", "unknown data.separator"),
    ("data.scoring.source=web", "is not one of the sources"),
])
def test_bad_input_is_one_clear_error_and_nothing_is_written(compose, override, message):
    cfg = compose("corpus", (*SMALL, override))
    with pytest.raises(UserError, match=message):
        corpus.run(cfg)
    assert not _out(cfg).parent.exists() or not any(_out(cfg).parent.iterdir())


def test_stratified_subset_splits_evenly_then_tops_up():
    rows = datasets.Dataset.from_dict({"domain": ["a"] * 10 + ["b"] * 2 + ["c"] * 10, "i": list(range(22))})
    subset = corpus.stratified_subset(rows, 9, seed=42)
    counts = Counter(subset["domain"])
    assert len(subset) == 9 and counts["b"] == 2 and counts["a"] >= 3 and counts["c"] >= 3
    assert subset["i"] == corpus.stratified_subset(rows, 9, seed=42)["i"]


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _real_trace_rows() -> list[dict]:
    """DeepSeek-R1 traces on MATH-500 problems, mapped into the OpenThoughts `metadata` schema."""
    path = shared_data("reasoning_traces/mip_overthinking/response/math/normal/deepseekR1/response.json")
    rows = []
    for item in json.loads(path.read_text()):
        reasoning, _, solution = item["deepseek-reasoner (question)"].partition("</think>")
        rows.append({"problem": item["question"], "deepseek_reasoning": reasoning.strip(),
                     "deepseek_solution": solution.strip(), "ground_truth_solution": item["solution"],
                     "domain": "math", "source": "MATH", "test_cases": None, "starter_code": None})
    return rows


def _real_chat_rows() -> list[dict]:
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


def test_real_r1_traces_and_chat_in_the_paper_r1_format(compose, tmp_path):
    reasoning = _write_jsonl(tmp_path / "r1_math.jsonl", _real_trace_rows())
    chat = _write_jsonl(tmp_path / "arena.jsonl", _real_chat_rows())
    cfg = compose("corpus", (f"data.sources.reasoning.path={reasoning}", f"data.sources.chat.path={chat}",
                             "data.sources.reasoning.rows=null", "data.sources.chat.rows=null",
                             "model.chat_format=r1", "data.context_size=512", "data.scoring.docs=20"))
    out = corpus.run(cfg)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["summary"]["pairs"] == 52 and meta["summary"]["score_docs_by_domain"] == {"math": 20}
    assert set(meta["inputs"]) == {"source:reasoning", "source:chat"}
    train = datasets.load_from_disk(str(out / "train"))
    assert Counter(train["source"])["reasoning"] == Counter(train["source"])["chat"] > 10


def test_without_the_training_mix_only_the_scoring_corpus_is_built(compose):
    from reasoning_sae.stages import train

    cfg = compose("corpus", (*SMALL, "data.train_mix=false"))
    out = corpus.run(cfg)
    assert not (out / "train").exists() and len(datasets.load_from_disk(str(out / "score"))) > 0
    assert json.loads((out / "meta.json").read_text())["summary"]["train_sequences"] == 0
    with pytest.raises(UserError, match=r"no training mix \(data.train_mix=false\): rerun it with data.train_mix=true"):
        train.run(compose("train", (*SMALL, "data.train_mix=false")))


def test_a_source_outside_the_mix_is_never_read(compose):
    never = "+data.sources.web={format: text, path: /nonexistent/slimpajama.jsonl, fraction: 0.0}"
    out = corpus.run(compose("corpus", (*SMALL, never)))
    assert set(json.loads((out / "meta.json").read_text())["summary"]["available_sequences_by_source"]) == {
        "reasoning", "chat"}
    with pytest.raises(UserError, match=r"data source '/nonexistent/slimpajama.jsonl' does not exist"):
        corpus.run(compose("corpus", (*SMALL, never.replace("0.0", "0.5"), "data.sources.chat.fraction=0.0",
                                      "force=true")))


def test_a_streamed_hub_source_needs_its_row_count():
    from reasoning_sae.data.sources import SourceConfig, _hub

    with pytest.raises(UserError, match=r"streams \(streaming: true\): set its rows"):
        _hub(SourceConfig(format="text", path="cerebras/SlimPajama-627B", streaming=True))
