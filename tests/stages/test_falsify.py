import json
from pathlib import Path

import datasets
import pandas as pd
import pytest

from reasoning_sae import UserError
from reasoning_sae.falsify import VERDICTS
from reasoning_sae.manifest import check_manifest
from reasoning_sae.stages import corpus, falsify, interpret, score, train, vocab
from tests.helpers import tiny


def test_falsify_stage_writes_verdicts_for_f_r_and_random_features(compose, tiny_llama_dir, caplog):
    overrides = (*tiny(tiny_llama_dir), "score.top_k=3", "falsify.random_features=20")
    for stage in (corpus, train, vocab, score, interpret):
        stage.run(compose(stage.__name__.rsplit(".", 1)[-1], overrides))
    cfg = compose("falsify", overrides)
    out = falsify.run(cfg)
    root = Path(cfg.paths.artifacts) / "demo"
    f_r = json.loads((root / "score" / "top_features.json").read_text())["features"]
    table = pd.read_csv(out / "falsify.csv")
    assert list(table.columns) == ["feature", "group", "triggers", "trigger_ids", "reasoning_mean", "baseline_mean",
                                   "injected_mean", "context_mean", "ablated_mean", "ratio", "cohens_d", "p_value",
                                   "injected_sites", "ablated_sites", "verdict"]
    assert table.loc[table["group"] == "F_R", "feature"].tolist() == f_r
    random = table[table["group"] == "random"]
    assert 0 < len(random) <= 20 and not set(random["feature"]) & set(f_r)
    assert set(table["verdict"]) <= set(VERDICTS) and (table.loc[table["group"] == "F_R", "injected_sites"] >= 6).all()
    # F_R's triggers are the scoring corpus' token ids at the interpret stage's top contexts
    contexts = json.loads((root / "interpret" / "contexts.json").read_text())[str(f_r[0])]
    scoring = datasets.load_from_disk(str(root / "corpus" / "score"))["input_ids"]
    best = max(contexts, key=lambda c: c["activation"])
    first = int(table.loc[table["feature"] == f_r[0], "trigger_ids"].iloc[0].split()[0])
    assert first == scoring[best["sequence"]][best["position"]]
    summary = json.loads((out / "meta.json").read_text())["summary"]
    assert summary["groups"]["F_R"]["features"] == 3 and "Ma et al." in summary["rule"]
    assert summary["tokens"]["chat"] == 16 * 32 and summary["tokens"]["injected"] > 0
    examples = json.loads((out / "examples.json").read_text())
    assert {e["kind"] for e in examples} == {"injected", "ablated"} and examples[0]["sites"]
    assert check_manifest(out) == []
    stamp = (out / "meta.json").read_text()
    assert falsify.run(cfg) == out and (out / "meta.json").read_text() == stamp  # unchanged: skipped

    # bad input: no trigger tokens for a feature of F_R, then no held-out chat; the artifact stays as it was
    path = root / "interpret" / "contexts.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), str(f_r[1]): []}))
    with pytest.raises(UserError, match=rf"features \[{f_r[1]}\] of F_R have no top contexts"):
        falsify.run(compose("falsify", (*overrides, "force=true")))
    # a feature that never fired has no contexts either: it is left out and named, not an error
    records_path = root / "interpret" / "features.json"
    records = json.loads(records_path.read_text())
    records_path.write_text(json.dumps({**records, str(f_r[1]): {**records[str(f_r[1])], "fires": 0}}))
    left_out = falsify.run(compose("falsify", (*overrides, "force=true")))
    assert json.loads((left_out / "meta.json").read_text())["summary"]["never_fire"] == [f_r[1]]
    assert f_r[1] not in set(pd.read_csv(left_out / "falsify.csv")["feature"])
    records_path.write_text(json.dumps(records))
    stamp = (out / "meta.json").read_text()
    corpus.run(compose("corpus", (*overrides, "data.heldout.sequences=0")))
    with pytest.raises(UserError, match="held-out chat split is empty.*set data.heldout.sequences"):
        falsify.run(cfg)
    assert (out / "meta.json").read_text() == stamp
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".falsify.tmp")]
