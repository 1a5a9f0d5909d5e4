"""The `vocab` stage: word frequencies in reasoning traces vs reference solutions, and the reasoning vocabulary.

Reads `pairs.parquet` of the corpus stage (or a local file named by `vocab.pairs`) and writes
`frequencies.parquet` (every word), `top_words.csv` and `fig2.png` (paper Fig. 2), `derived_vocabulary.json`
(surface forms of the top words) and `vocabulary.json`, the surface strings the score stage uses.
"""

import json
import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from reasoning_sae.artifacts import path_fingerprint, run_stage, stage_dir
from reasoning_sae.errors import UserError
from reasoning_sae.figures.vocabulary import STAGE_FIG2, draw_fig2
from reasoning_sae.models.config import ModelConfig, model_config
from reasoning_sae.vocab.frequency import frequency_table, top_words
from reasoning_sae.vocab.vocabulary import DEFAULT_VOCABULARY, derive_vocabulary, load_vocabulary, save_vocabulary

log = logging.getLogger(__name__)
CONFIG_KEYS = ("vocab", "model")  # model: its think_start / think_end cut the traces
USES = ("default", "derived")


def pairs_path(cfg: DictConfig) -> Path:
    """The pairs file: `vocab.pairs` if set, else the corpus artifact's pairs.parquet."""
    if cfg.vocab.get("pairs"):
        path = Path(cfg.vocab.pairs).expanduser()
        if not path.is_file():
            raise UserError(f"vocab.pairs={path} does not exist: give a parquet or jsonl file with columns "
                            f"reasoning and solution")
        return path
    corpus = stage_dir(cfg, "corpus")
    if not (corpus / "meta.json").is_file():
        raise UserError(f"no corpus artifact at {corpus}: run `python -m reasoning_sae corpus` first "
                        f"(or set vocab.pairs to a local file)")
    path = corpus / "pairs.parquet"
    if not path.is_file():
        raise UserError(f"the corpus artifact {corpus} has no pairs.parquet (its scoring source has no reference "
                        f"solutions): run the corpus stage on an OpenThoughts-format source or set vocab.pairs")
    return path


def thinking_part(reasoning: pd.Series, model: ModelConfig) -> pd.Series:
    """Each trace up to its first model.think_end (R1 responses hold both parts), without model.think_start."""
    if model.think_end:
        reasoning = reasoning.str.split(model.think_end, n=1).str[0]
    return reasoning.str.replace(model.think_start, "", regex=False) if model.think_start else reasoning


def read_pairs(path: Path, model: ModelConfig) -> pd.DataFrame:
    """Columns reasoning and solution; a trace is cut to its thinking part (`thinking_part`)."""
    if path.suffix == ".parquet":
        pairs = pd.read_parquet(path)
    elif path.suffix in (".jsonl", ".json"):
        pairs = pd.read_json(path, lines=path.suffix == ".jsonl")
    else:
        raise UserError(f"vocab.pairs={path} has an unknown format: use a .parquet, .jsonl or .json file")
    missing = {"reasoning", "solution"} - set(pairs.columns)
    if missing:
        raise UserError(f"{path} lacks the columns {sorted(missing)}: give it columns reasoning and solution")
    reasoning = thinking_part(pairs["reasoning"].fillna("").astype(str), model)
    return pd.DataFrame({"reasoning": reasoning, "solution": pairs["solution"].fillna("").astype(str)})


def plot_fig2(rows: pd.DataFrame, threshold: float, path: Path) -> None:
    """Fig. 2 as a preview beside the stage's tables (the figures stage draws the paper's, with the same function)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw_fig2(rows, threshold, STAGE_FIG2)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def choose_vocabulary(cfg: DictConfig, derived: list[str]) -> tuple[list[str], str]:
    if cfg.vocab.get("file"):
        return load_vocabulary(cfg.vocab.file), f"file:{cfg.vocab.file}"
    if cfg.vocab.use == "derived":
        if not derived:
            raise UserError("no word passes the filter, so the derived vocabulary is empty: raise "
                            "vocab.general_frequency_threshold, lower vocab.min_count or use vocab.use=default")
        return derived, "derived"
    return list(DEFAULT_VOCABULARY), "default"


def build(cfg: DictConfig, path: Path, out: Path) -> dict:
    v = cfg.vocab
    pairs = read_pairs(path, model_config(OmegaConf.to_container(cfg.model, resolve=True)))
    table = frequency_table(pairs["reasoning"], pairs["solution"], top_k=v.top_k,
                            threshold=v.general_frequency_threshold, min_count=v.min_count)
    table.to_parquet(out / "frequencies.parquet", index=False)
    top = top_words(table)
    top[["rank", "word", "diff", "p_think", "p_solution", "general_frequency", "filtered", "kept"]].to_csv(
        out / "top_words.csv", index=False)
    plot_fig2(top, v.general_frequency_threshold, out / "fig2.png")

    derived = derive_vocabulary(table, top_k=v.derived_words) if table["kept"].any() else []
    (out / "derived_vocabulary.json").write_text(json.dumps(derived, indent=2, ensure_ascii=False) + "\n")
    vocabulary, source = choose_vocabulary(cfg, derived)
    save_vocabulary(vocabulary, out / "vocabulary.json")
    kept = table.loc[table["kept"], "word"].tolist()
    return {"pairs": len(pairs), "words": len(table), "kept": len(kept), "top_words": kept[:10],
            "vocabulary": source, "vocabulary_size": len(vocabulary)}


def run(cfg: DictConfig) -> Path:
    if cfg.vocab.use not in USES:
        raise UserError(f"unknown vocab.use {cfg.vocab.use!r}: use one of {', '.join(USES)} (or set vocab.file)")
    path = pairs_path(cfg)
    inputs = {"pairs": path_fingerprint(path if cfg.vocab.get("pairs") else path.parent)}
    if cfg.vocab.get("file"):
        load_vocabulary(cfg.vocab.file)  # fail before anything is written
        inputs["vocabulary_file"] = path_fingerprint(Path(cfg.vocab.file).expanduser())
    return run_stage(cfg, "vocab", CONFIG_KEYS, inputs, lambda out: build(cfg, path, out))
