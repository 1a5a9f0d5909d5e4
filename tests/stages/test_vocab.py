import json
from pathlib import Path

import pandas as pd
import pytest

from reasoning_sae import UserError
from reasoning_sae.models import ModelConfig
from reasoning_sae.stages import corpus, vocab
from reasoning_sae.vocab import DEFAULT_VOCABULARY, load_vocabulary

SMALL = ("data.sources.reasoning.rows=60", "data.sources.chat.rows=80", "data.context_size=64",
         "data.scoring.docs=30")
OUTPUTS = {"frequencies.parquet", "top_words.csv", "fig2.png", "derived_vocabulary.json", "vocabulary.json",
           "config.yaml", "meta.json", "MANIFEST.sha256"}


@pytest.fixture
def demo_corpus(compose):
    return corpus.run(compose("corpus", SMALL))


def test_vocab_stage_on_the_demo_corpus(compose, demo_corpus, caplog):
    out = vocab.run(compose("vocab", SMALL))
    assert {p.name for p in out.iterdir()} == OUTPUTS
    assert load_vocabulary(out / "vocabulary.json") == list(DEFAULT_VOCABULARY)
    table = pd.read_parquet(out / "frequencies.parquet")
    assert table["kept"].sum() == 40 and table["rank"].tolist() == list(range(1, len(table) + 1))
    top = pd.read_csv(out / "top_words.csv")
    assert top["kept"].sum() == 40 and set(top.loc[top["filtered"], "word"]) <= set(table.loc[table["filtered"], "word"])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["summary"]["pairs"] == 60 and len(meta["summary"]["top_words"]) == 10
    assert meta["inputs"]["pairs"] == json.loads((demo_corpus / "meta.json").read_text())["fingerprint"]
    derived = json.loads((out / "derived_vocabulary.json").read_text())
    assert len(derived) == 40 and derived[0] == meta["summary"]["top_words"][0]
    with caplog.at_level("INFO"):
        vocab.run(compose("vocab", SMALL))
    assert "up to date" in caplog.text and json.loads((out / "meta.json").read_text()) == meta


def test_use_derived_and_a_vocabulary_file(compose, demo_corpus, tmp_path):
    out = vocab.run(compose("vocab", (*SMALL, "vocab.use=derived", "vocab.derived_words=3")))
    derived = json.loads((out / "derived_vocabulary.json").read_text())
    assert load_vocabulary(out / "vocabulary.json") == derived and len(derived) == 12
    custom = tmp_path / "reason_tokens.json"
    custom.write_text('["Wait", " wait"]')
    out = vocab.run(compose("vocab", (*SMALL, f"vocab.file={custom}")))
    assert load_vocabulary(out / "vocabulary.json") == ["Wait", " wait"]


def test_local_pairs_file(compose, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"reasoning": "<think>Hmm, wait. Maybe x is 2. Wait, check.</think>So x = 2.", "solution": "x is 2."}] * 5
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = vocab.run(compose("vocab", (f"vocab.pairs={pairs}", "vocab.top_k=3")))
    table = pd.read_parquet(out / "frequencies.parquet").set_index("word")
    assert table.loc["wait", "count_think"] == 10 and "think" not in table.index and "so" not in table.index
    assert table.index[table["kept"]].tolist() == ["wait", "check", "hmm"]


def test_traces_are_cut_at_the_models_think_markers():
    traces = pd.Series(["<think>Hmm, wait.</think>So 2.", "<r>Wait.</r>Done. <think>", "no markers"])
    assert vocab.thinking_part(traces, ModelConfig("m")).tolist() == ["Hmm, wait.", "<r>Wait.</r>Done. ", "no markers"]
    assert vocab.thinking_part(traces, ModelConfig("m", think_start="<r>", think_end="</r>")).tolist() == [
        "<think>Hmm, wait.</think>So 2.", "Wait.", "no markers"]
    assert vocab.thinking_part(traces, ModelConfig("m", think_start=None, think_end=None)).tolist() == traces.tolist()


@pytest.mark.parametrize(("overrides", "message"), [
    ((), "run `python -m reasoning_sae corpus` first"),
    (("vocab.pairs=/nonexistent/pairs.jsonl",), "does not exist"),
    (("vocab.use=mine",), "unknown vocab.use"),
])
def test_bad_input_is_one_clear_error_and_nothing_is_written(compose, overrides, message):
    cfg = compose("vocab", overrides)
    with pytest.raises(UserError, match=message):
        vocab.run(cfg)
    assert not (Path(cfg.paths.artifacts) / "demo" / "vocab").exists()
