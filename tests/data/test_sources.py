import json

import datasets
import pytest

from reasoning_sae import UserError
from reasoning_sae.data.sources import SourceConfig, load_source

OPENTHOUGHTS_ROWS = [  # the OpenThoughts-114k `metadata` config's columns, hand-made rows
    {"problem": f"Problem {i}", "deepseek_reasoning": "Okay, so... Wait, hmm.", "deepseek_solution": "\\boxed{1}",
     "ground_truth_solution": "Formal solution.", "domain": domain, "source": "fixture",
     "test_cases": json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]}) if domain == "code" else None,
     "starter_code": "" if domain == "code" else None}
    for i, domain in enumerate(["math", "code", "biology", "puzzle", "math", "physics"])
]
LMSYS_ROWS = [  # LMSYS-Chat-1M's columns
    {"conversation_id": f"c{i}", "model": "vicuna-13b", "turn": 1, "language": "English", "redacted": False,
     "conversation": [{"content": f"Question {i}?", "role": "user"}, {"content": "An answer.", "role": "assistant"}],
     "openai_moderation": [{"categories": {"hate": False}, "flagged": False}]}
    for i in range(4)
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_openthoughts_from_jsonl_parquet_and_disk(tmp_path):
    ds = datasets.Dataset.from_list(OPENTHOUGHTS_ROWS)
    ds.to_parquet(str(tmp_path / "ot.parquet"))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "ot_disk"))
    for path in (_jsonl(tmp_path / "ot.jsonl", OPENTHOUGHTS_ROWS), tmp_path / "ot.parquet", tmp_path / "ot_disk"):
        rows = load_source(SourceConfig(format="openthoughts", path=str(path)))
        assert rows["problem"] == [r["problem"] for r in OPENTHOUGHTS_ROWS]


def test_lmsys_schema_from_jsonl(tmp_path):
    rows = load_source(SourceConfig(format="lmsys", path=_jsonl(tmp_path / "chat.jsonl", LMSYS_ROWS)))
    assert rows[0]["conversation"][0] == {"content": "Question 0?", "role": "user"}


def test_domains_and_row_cap(tmp_path):
    path = _jsonl(tmp_path / "ot.jsonl", OPENTHOUGHTS_ROWS)
    rows = load_source(SourceConfig(format="openthoughts", path=path, domains=["math", "code"], rows=2))
    assert rows["domain"] == ["math", "code"]


def test_demo_sources_generate_rows():
    assert len(load_source(SourceConfig(format="openthoughts", path="demo:reasoning", rows=12))) == 12
    assert len(load_source(SourceConfig(format="lmsys", path="demo:chat", rows=5))) == 5


def test_missing_column_is_named(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "deepseek_reasoning"} for r in OPENTHOUGHTS_ROWS]
    with pytest.raises(UserError, match="lacks column\\(s\\) deepseek_reasoning required by format 'openthoughts'"):
        load_source(SourceConfig(format="openthoughts", path=_jsonl(tmp_path / "bad.jsonl", rows)))


def test_empty_dataset_is_rejected(tmp_path):
    empty = datasets.Dataset.from_dict({"text": []}, features=datasets.Features({"text": datasets.Value("string")}))
    empty.save_to_disk(str(tmp_path / "empty"))
    empty.to_parquet(str(tmp_path / "empty.parquet"))
    (tmp_path / "empty.jsonl").write_text("\n")
    for name in ("empty", "empty.parquet", "empty.jsonl"):
        with pytest.raises(UserError, match="is empty"):
            load_source(SourceConfig(format="text", path=str(tmp_path / name)))


def test_missing_path_and_unknown_format(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_source(SourceConfig(format="lmsys", path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(UserError, match="unknown source format"):
        load_source(SourceConfig(format="sharegpt", path="demo:chat"))


def test_hub_dataset_while_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="unreachable \\(offline\\).*save_to_disk"):
        load_source(SourceConfig(format="openthoughts", path="open-thoughts/OpenThoughts-114k", name="metadata"))
