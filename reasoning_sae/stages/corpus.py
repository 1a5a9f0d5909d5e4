"""The `corpus` stage: training mix and scoring subset as packed token sequences, plus reasoning/solution pairs.

Writes `train/` and `score/` (HF datasets on disk, column `input_ids` of `context_size` tokens; `train` also has
`source`), `heldout/` (sequences of `data.heldout.source` that the training mix did not read: the falsify stage's
non-reasoning text) and `pairs.parquet` (problem, reasoning, solution, domain) for the vocab stage.
"""

import logging
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import datasets
from omegaconf import DictConfig, OmegaConf

from reasoning_sae.artifacts import path_fingerprint, run_stage
from reasoning_sae.data.formats import CHAT_FORMATS, format_lmsys, format_openthoughts
from reasoning_sae.data.packing import check_context_size, pack
from reasoning_sae.data.sources import DEMO_PREFIX, DEMO_ROWS, SourceConfig, load_source, source_configs
from reasoning_sae.errors import UserError
from reasoning_sae.models.config import ModelConfig, model_config
from reasoning_sae.models.loading import load_tokenizer

log = logging.getLogger(__name__)
CONFIG_KEYS = ("data", "model")


def _formatter(source: SourceConfig, chat_format: str, tokenizer):
    if chat_format not in CHAT_FORMATS:
        raise UserError(f"unknown chat_format {chat_format!r}: set model.chat_format to one of {CHAT_FORMATS}")
    if source.format == "openthoughts":
        return lambda row: format_openthoughts(row, chat_format, tokenizer)
    if source.format == "lmsys":
        return lambda row: format_lmsys(row["conversation"], chat_format, tokenizer, source.final_eos)
    return lambda row: row["text"]


def as_texts(rows: datasets.Dataset, source: SourceConfig, chat_format: str, tokenizer) -> datasets.Dataset:
    fmt = _formatter(source, chat_format, tokenizer)
    return rows.map(lambda row: {"text": fmt(row)}, remove_columns=rows.column_names, desc="format")


def stratified_subset(rows: datasets.Dataset, n: int, seed: int, column: str = "domain") -> datasets.Dataset:
    """n rows split evenly over the values of `column`, topped up from the remaining rows (shuffled, seeded)."""
    rows = rows.shuffle(seed=seed)
    if column not in rows.column_names or n >= len(rows):
        return rows.select(range(min(n, len(rows))))
    labels = rows[column]
    per_label = n // len(set(labels))
    taken: Counter = Counter()
    chosen, rest = [], []
    for i, label in enumerate(labels):
        (chosen if taken[label] < per_label else rest).append(i)
        taken[label] += 1
    chosen += rest[: n - len(chosen)]
    return rows.select(chosen)


def training_mix(packed: dict[str, datasets.Dataset], fractions: dict[str, float], context_size: int,
                 training_tokens: int | None, seed: int) -> datasets.Dataset:
    """Sequences from each source in proportion to its fraction, shuffled together."""
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise UserError(f"data.sources fractions sum to {total:g}: make them sum to 1")
    used = {name: f for name, f in fractions.items() if f > 0}
    n_total = (training_tokens // context_size if training_tokens
               else min(int(len(packed[name]) / f) for name, f in used.items()))
    parts = []
    for name, f in used.items():
        take = int(f * n_total)
        if take > len(packed[name]):
            raise UserError(
                f"source {name!r} has {len(packed[name]) * context_size:,} tokens but the mix needs "
                f"{take * context_size:,}: lower data.training_tokens or its fraction, or add rows"
            )
        part = packed[name].select(range(take))
        parts.append(part.add_column("source", [name] * take))
    return datasets.concatenate_datasets(parts).shuffle(seed=seed).flatten_indices()


def rows_past(src: SourceConfig, start: int, count: int) -> datasets.Dataset:
    """Rows [start, start + count) of a source, ignoring its `rows` cap (a demo source generates them: its row i
    depends only on its seed and i, so rows past the cap are new ones)."""
    rows = load_source(replace(src, rows=start + count if src.path.startswith(DEMO_PREFIX) else None))
    return rows.select(range(min(start, len(rows)), min(start + count, len(rows))))


def heldout_split(data: DictConfig, sources: dict[str, SourceConfig], packed: dict[str, datasets.Dataset],
                  pack_rows) -> datasets.Dataset | None:
    """`data.heldout.sequences` packed sequences of `data.heldout.source` that the training mix does not read (None
    when none are asked for): a source the mix reads up to its `rows` cap gives rows past the cap (the mix is
    unchanged); a source the mix does not read gives its first rows; a source the mix reads whole gives up its last
    packed sequences, removed from `packed` before the mix draws. `pack_rows(rows, source)` packs rows."""
    hc = data.get("heldout")
    if not hc or not hc.sequences:
        return None
    if hc.source not in sources:
        raise UserError(f"data.heldout.source={hc.source!r} is not one of the sources {sorted(sources)}")
    src, need = sources[hc.source], hc.sequences
    if hc.source in packed and src.rows is None:
        available = len(packed[hc.source])
        if need >= available:
            raise UserError(f"data.heldout.sequences={need} would hold out all {available} sequences of source "
                            f"{hc.source!r}, leaving none for the training mix: lower it")
        heldout = packed[hc.source].select(range(available - need, available))
        packed[hc.source] = packed[hc.source].select(range(available - need))
        return heldout
    parts, have, start = [], 0, src.rows if hc.source in packed else 0
    while have < need:  # one packing batch of rows at a time, until there are enough sequences
        rows = rows_past(src, start, data.batch_size)
        if len(rows) == 0:
            break
        parts.append(pack_rows(rows, src))
        have, start = have + len(parts[-1]), start + len(rows)
    if not have:
        log.warning("data.heldout: source %r has no rows past the %s the training mix reads: no held-out split",
                    hc.source, f"{src.rows} rows" if src.rows else "rows")
        return None
    return datasets.concatenate_datasets(parts).select(range(min(need, have)))


def reasoning_pairs(rows: datasets.Dataset) -> datasets.Dataset | None:
    """Reasoning trace vs reference solution of the same problem (OpenThoughts `ground_truth_solution`)."""
    if "ground_truth_solution" not in rows.column_names:
        return None
    pairs = rows.select_columns(["problem", "deepseek_reasoning", "ground_truth_solution", "domain"])
    return pairs.rename_columns({"deepseek_reasoning": "reasoning", "ground_truth_solution": "solution"})


def build(cfg: DictConfig, out: Path) -> dict:
    data = cfg.data
    check_context_size(data.context_size)
    model_cfg: ModelConfig = model_config(OmegaConf.to_container(cfg.model, resolve=True))
    sources = source_configs(data)
    if data.scoring.source not in sources:
        raise UserError(f"data.scoring.source={data.scoring.source!r} is not one of the sources {sorted(sources)}")
    # Only the sources the mix takes from (fraction > 0) and the scoring source are read: a source at fraction 0
    # (the paper's SlimPajama, read only by the model-diffing stages) is never downloaded for the main corpus.
    # They are read before the tokenizer loads, so a bad source fails first.
    mixed = {n: s for n, s in sources.items() if s.fraction > 0} if data.get("train_mix", True) else {}
    rows = {name: load_source(src) for name, src in {**mixed, data.scoring.source: sources[data.scoring.source]}.items()}
    tokenizer = load_tokenizer(model_cfg)
    bos = model_cfg.bos_token_id if model_cfg.bos_token_id is not None else tokenizer.bos_token_id
    eos = model_cfg.eos_token_id if model_cfg.eos_token_id is not None else tokenizer.eos_token_id
    separators = {"eos": eos, "bos": bos, "none": None}
    if data.separator not in separators:
        raise UserError(f"unknown data.separator {data.separator!r}: use eos, bos or none")

    def pack_texts(texts: datasets.Dataset, desc: str) -> datasets.Dataset:
        packed = pack(texts, tokenizer, data.context_size, separators[data.separator],
                      bos if data.prepend_bos else None, data.batch_size, data.num_proc, desc)
        if len(packed) == 0:
            raise UserError(f"{desc} yields less than one sequence of {data.context_size} tokens: "
                            f"lower data.context_size or add rows")
        return packed.shuffle(seed=data.shuffle_seed).flatten_indices()

    packed = {name: pack_texts(as_texts(rows[name], src, model_cfg.chat_format, tokenizer), f"pack {name}")
              for name, src in mixed.items()}

    def pack_heldout(src_rows: datasets.Dataset, src: SourceConfig) -> datasets.Dataset:  # in document order
        return pack(as_texts(src_rows, src, model_cfg.chat_format, tokenizer), tokenizer, data.context_size,
                    separators[data.separator], bos if data.prepend_bos else None, data.batch_size, data.num_proc,
                    "pack heldout")

    heldout = heldout_split(data, sources, packed, pack_heldout)
    if heldout is not None:
        heldout.save_to_disk(str(out / "heldout"))
    train = None
    if data.get("train_mix", True):
        train = training_mix(packed, {n: s.fraction for n, s in sources.items()}, data.context_size,
                             data.training_tokens, data.shuffle_seed)
        train.save_to_disk(str(out / "train"))

    scoring_src = sources[data.scoring.source]
    subset = stratified_subset(rows[data.scoring.source], data.scoring.docs, data.scoring.shuffle_seed)
    score = pack_texts(as_texts(subset, scoring_src, model_cfg.chat_format, tokenizer), "pack scoring subset")
    if data.scoring.sequences:
        score = score.select(range(min(data.scoring.sequences, len(score))))
    score.save_to_disk(str(out / "score"))

    pairs = reasoning_pairs(rows[data.scoring.source])
    if pairs is not None:
        pairs.to_parquet(str(out / "pairs.parquet"))
    summary = {
        "context_size": data.context_size,
        "train_sequences": len(train) if train else 0,
        "train_tokens": len(train) * data.context_size if train else 0,
        "train_sequences_by_source": dict(Counter(train["source"])) if train else {},
        "available_sequences_by_source": {name: len(p) for name, p in packed.items()},
        "score_sequences": len(score),
        "score_tokens": len(score) * data.context_size,
        "score_docs_by_domain": dict(Counter(subset["domain"])) if "domain" in subset.column_names else {},
        "pairs": 0 if pairs is None else len(pairs),
        "heldout_sequences": 0 if heldout is None else len(heldout),
    }
    if any(s.path.startswith(DEMO_PREFIX) for s in sources.values()):
        (out / "DATACARD.md").write_text(data_card(cfg, sources, summary))
    return summary


def data_card(cfg: DictConfig, sources: dict[str, SourceConfig], summary: dict) -> str:
    """The demo corpus' data card: what it is, how it is generated, how it differs from the paper's data."""
    from jinja2 import Environment, PackageLoader

    from reasoning_sae.data.demo import DOMAINS
    from reasoning_sae.data.demo.traces import FAMILIES

    rows = [{"name": name, "path": s.path, "rows": s.rows or DEMO_ROWS, "seed": s.seed, "fraction": s.fraction,
             "schema": {"openthoughts": "OpenThoughts-114k", "lmsys": "LMSYS-Chat-1M"}.get(s.format, s.format),
             "available": summary["available_sequences_by_source"].get(name)}
            for name, s in sources.items() if s.path.startswith(DEMO_PREFIX)]
    env = Environment(loader=PackageLoader("reasoning_sae.data"), trim_blocks=True, lstrip_blocks=True)
    return env.get_template("DATACARD.md.j2").render(
        experiment=cfg.experiment_name, sources=rows, summary=summary, scoring_source=cfg.data.scoring.source,
        model=cfg.model.name, chat_format=cfg.model.chat_format, separator=cfg.data.separator,
        n_families=sum(len(f) for f in FAMILIES.values()), domains=DOMAINS,
        total_rows=sum(r["rows"] or 0 for r in rows))


def source_inputs(cfg: DictConfig) -> dict[str, str]:
    """Fingerprints of local source files (hub and demo sources are fully named by the config)."""
    inputs = {}
    for name, src in source_configs(cfg.data).items():
        path = Path(src.path).expanduser()
        if not src.path.startswith(DEMO_PREFIX) and path.exists():
            inputs[f"source:{name}"] = path_fingerprint(path)
    return inputs


def run(cfg: DictConfig) -> Path:
    return run_stage(cfg, "corpus", CONFIG_KEYS, source_inputs(cfg), lambda out: build(cfg, out))
