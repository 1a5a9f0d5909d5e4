"""`REPORT.md`: every figure and table, ours beside the paper's numbers (`paper/expected/`), with the experiment,
model, SAE and scale that produced ours. Rendered with Jinja2 from `templates/REPORT.md.j2`."""

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader

from reasoning_sae.artifacts import TOP_FEATURES
from reasoning_sae.figures.common import Artifacts, Item, PaperRun, fmt, markdown

TEMPLATES = Path(__file__).parent / "templates"
PAPER_MODEL = "DeepSeek-R1-Distill-Llama-8B"
# Which expected-numbers file (paper/expected/<name>.yaml) holds the paper's side of each item.
EXPECTED = {"fig2": "fig2", "fig3b": "fig3b", "fig4": "fig4", "fig5": "fig5", "fig6": "fig6", "table1": "table1",
            "table2": "table2", "table3": "table3", "table4": "table4"}
INTERFACE_KEYS = {"fig3a": "fig3a", "fig8a": "fig8a_uncertainty", "fig8b": "fig8b_exploration",
                  "fig9a": "fig9a_reflection", "fig9b": "fig9b_mixed"}


def expected(name: str) -> dict | None:
    """The paper's numbers for one item, or None when paper/expected/ (or its loader) is absent."""
    try:
        from reasoning_sae.paper_expected import load_expected
    except ImportError:
        return None
    try:
        return load_expected(name)
    except Exception:  # a missing or malformed file: the report says the paper's numbers are unavailable
        return None


def expected_table(table: dict) -> str:
    frame = pd.DataFrame(table["rows"], columns=table["columns"]).map(fmt)
    return markdown(frame)


def paper_side(key: str) -> str:
    """Markdown with the paper's numbers for one item ('' when there are none)."""
    if key in INTERFACE_KEYS:
        data = expected("feature_interfaces")
        ids = (data or {}).get("figures", {}).get(INTERFACE_KEYS[key])
        return f"Paper features: {json.dumps(ids)} (ids of the authors' SAE)." if ids else ""
    if key.startswith("table") and key[5:].isdigit() and 5 <= int(key[5:]) <= 9:
        data = expected("tables5_9") or {}
        example = next((e for e in data.get("examples", []) if e.get("table") == int(key[5:])), None)
        return ("Paper: " + "; ".join(f"{k}: {v}" for k, v in example.items() if k != "table")) if example else ""
    data = expected(EXPECTED.get(key, ""))
    if data is None:
        return ""
    if key == "fig5":
        return f"Paper words ({len(data['words'])}): {', '.join(data['words'])}."
    if key == "fig6":
        return (f"Paper: |F_R| = {data['f_r_size']['value']} of {data['settings']['n_features']:,} features "
                f"(q = {data['settings']['quantile']}).")
    if key == "fig2":
        return (f"Paper: top {data['settings']['top_words_plotted']} words plotted, "
                f"{data['settings']['final_vocabulary_size']} kept by hand; the Ngram threshold is not stated.")
    if key == "table4":
        groups = data.get("groups", [])
        return "Paper groups:\n\n" + markdown(pd.DataFrame(
            {"Group": [g["name"] for g in groups], "Features": [", ".join(map(str, g["features"])) for g in groups]}))
    if "table" in data:
        return "Paper:\n\n" + expected_table(data["table"])
    return ""


def ours_text(item: Item) -> str:
    """Our headline numbers as one line."""
    def show(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(show(v) for v in value) + "]"
        return str(value)

    return "; ".join(f"{k} = {show(v)}" for k, v in item.ours.items())


def setup(art: Artifacts) -> dict:
    """Experiment, model, SAE and scale, from the artifacts' configs and metadata."""
    score_cfg, eval_cfg = art.config("score"), art.config("evaluate")
    from reasoning_sae.sae.io import CFG

    top = art.top_features() if art.has("score", TOP_FEATURES) else {}
    source = top.get("sae", {"kind": "train", "path": str(art.sae_dir())})
    sae_cfg_path = Path(source.get("path") or art.sae_dir()) / CFG
    sae = json.loads(sae_cfg_path.read_text()) if sae_cfg_path.is_file() else {}
    train = json.loads((art.root / "train" / "metrics.json").read_text()) \
        if (art.root / "train" / "metrics.json").is_file() else {}
    counts = json.loads((art.root / "score" / "counts.json").read_text()) \
        if (art.root / "score" / "counts.json").is_file() else {}
    bench, steering = eval_cfg.get("benchmark", {}), eval_cfg.get("steering", {})
    return {
        "model": score_cfg.get("model", {}).get("name", "unknown"),
        "hook": sae.get("metadata", {}).get("hook_name"),
        "d_in": sae.get("d_in"), "d_sae": sae.get("d_sae"),
        "sae_tokens": sae.get("metadata", {}).get("tokens_seen") or train.get("details/n_training_tokens"),
        **quality(train),
        "scoring_tokens": counts.get("tokens"),
        "tasks": bench.get("tasks", []), "limit": bench.get("limit"), "repeats": bench.get("repeats"),
        "max_gen_toks": bench.get("max_gen_toks"), "gammas": steering.get("gammas"), "mode": steering.get("mode"),
        "sae_source": sae_text(source),
        "data": ", ".join(str(s.get("path")) for s in score_cfg.get("data", {}).get("sources", {}).values()),
    }


def quality(train: dict) -> dict:
    """The SAE's quality as SAELens reports it (paper Sec. 4.1: L0 and variance explained), plus the per-dimension
    explained variance and CE/KL recovered; `dominated` when one residual dimension holds most of the variance."""
    names = {"l0": "l0", "explained_variance": "explained_variance", "ev_per_dim": "explained_variance_per_dim",
             "ce_recovered": "ce_loss_score", "kl_recovered": "kl_div_score", "top_dim_share": "top_dim_variance_share"}
    out = {key: train.get(f"metrics/{name}") for key, name in names.items()}
    out["dominated"] = (out["top_dim_share"] or 0) > 0.5
    return out


def sae_text(source: dict) -> str:
    kind = source.get("kind", "train")
    if kind == "hub":
        return (f"{source['repo_id']}/{source.get('subfolder') or ''} at commit {source.get('commit', '?')[:12]} "
                f"(hub)")
    if kind == "sae_lens":
        return f"SAELens {source['release']} / {source['sae_id']}"
    return "trained here (train stage)" if kind == "train" else f"{source.get('path')} (local)"


def provenance(art: Artifacts) -> list[dict]:
    rows = []
    for stage in ("corpus", "train", "vocab", "score", "interpret", "evaluate", "autointerp", "diff"):
        meta = art.meta(stage)
        rows.append({"stage": stage, "created": meta.get("created", "not run"), "seconds": meta.get("seconds", "–"),
                     "commit": (meta.get("git_commit") or "–")[:12]})
    return rows


def sae_quality() -> dict:
    data = expected("sae_quality") or {}
    return {"l0": data.get("l0", {}).get("value", "–"),
            "variance_explained": f"{data['variance_explained']['value']}%" if data else "–"}


def pct(value) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}%"


def intervals(items: list[Item]) -> dict | None:
    """figures.uncertainty as Tables 1-2 used it (None when neither was built)."""
    return next((i.ours["intervals"] for i in items if i.key in ("table1", "table2") and "intervals" in i.ours), None)


def render(art: Artifacts, items: list[Item], run: PaperRun) -> str:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    entries = [{"item": i, "ours": ours_text(i), "paper": paper_side(i.key)} for i in items]
    return env.get_template("REPORT.md.j2").render(
        experiment=art.experiment, is_paper=run.compare, run=run, setup=setup(art), entries=entries,
        provenance=provenance(art), paper_model=PAPER_MODEL, sae_quality=sae_quality(), pct=pct,
        created=time.strftime("%Y-%m-%d %H:%M"), has_expected=expected("table1") is not None,
        intervals=intervals(items))
