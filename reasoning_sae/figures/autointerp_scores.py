"""Beyond the paper: the autointerp stage's descriptions scored as delphi scores them (detection, fuzzing), per feature
and per group, from its scores.csv and score_groups.csv (reasoning_sae.interpret.scoring)."""

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.figures.common import Artifacts, Item, fmt, not_run, write_table
from reasoning_sae.figures.groups import AUTOINTERP_MISSING

KEY, LABEL, TITLE = "explanation_scores", "Beyond 2", "Scored explanations (detection, fuzzing)"
NOT_SCORED = "the autointerp stage ran without scoring: set autointerp.scoring.enabled=true and rerun it"
SUFFIX = "_balanced_accuracy"


def _pct(value) -> str:
    return fmt(None if pd.isna(value) else 100 * float(value))


def _methods(scores: pd.DataFrame) -> list[str]:
    """The methods that labelled at least one example."""
    return [c.removesuffix(SUFFIX) for c in scores.columns
            if c.endswith(SUFFIX) and scores[f"{c.removesuffix(SUFFIX)}_n"].sum() > 0]


def _columns(row, methods: list[str]) -> dict[str, str]:
    return {name: _pct(row[f"{m}{suffix}"]) for m in methods
            for name, suffix in ((f"{m.capitalize()} bal. acc. %", SUFFIX), (f"{m.capitalize()} F1 %", "_f1"))}


def explanation_scores(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    """Per feature (its description, each method's balanced accuracy and F1, the examples labelled) and per group of
    Table 4 (the means over its features), then all features."""
    if not art.has("autointerp"):
        return not_run(KEY, LABEL, TITLE, AUTOINTERP_MISSING)
    if not art.has("autointerp", "scores.csv"):
        return not_run(KEY, LABEL, TITLE, NOT_SCORED)
    scores, groups = art.csv("autointerp", "scores.csv"), art.csv("autointerp", "score_groups.csv")
    methods = _methods(scores)
    described = ({int(d["feature"]): d["description"] for d in art.json("autointerp", "descriptions.json")}
                 if art.has("autointerp", "descriptions.json") else {})
    by_feature = pd.DataFrame([{"Feature": str(int(r["feature"])),
                                "Description": " ".join(described.get(int(r["feature"]), "").split()) or "–",
                                **_columns(r, methods),
                                "n": " / ".join(str(int(r[f"{m}_n"])) for m in methods)}
                               for r in scores.to_dict("records")])
    by_group = pd.DataFrame([{"Group": r["group"], "Features": str(r["features"]), "n": str(int(r["n_features"])),
                              **_columns(r, methods)} for r in groups.to_dict("records")])
    explainer = art.meta("autointerp").get("summary", {}).get("explainer", "the explainer")
    note = (f"Each description labelled by {explainer} on held-out contexts of the interpret stage, as delphi scores "
            f"explanations ({', '.join(methods)}); balanced accuracy 50% is chance; n: examples labelled "
            f"({' / '.join(methods)}).")
    files, table = write_table(by_feature, out, KEY, f"{TITLE}, per feature", note)
    group_files, group_table = write_table(by_group, out, f"{KEY}_groups", f"{TITLE}, per group")
    all_row = groups.iloc[-1]
    ours = {"n_features": len(scores), "explainer": explainer,
            **{m: round(float(all_row[f"{m}{SUFFIX}"]), 4) for m in methods}}
    return Item(KEY, LABEL, TITLE, files + group_files, ours=ours, notes=[note],
                markdown=table + "\n" + group_table)
