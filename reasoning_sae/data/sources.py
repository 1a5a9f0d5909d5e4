"""Where corpus rows come from: the embedded demo generator, local JSONL/JSON/parquet files, datasets saved
with `save_to_disk`, or the Hugging Face Hub. Every source is checked against its schema's required columns."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from omegaconf import DictConfig, OmegaConf

from reasoning_sae.errors import UserError
from reasoning_sae.models.loading import hub_reachable

# Columns each schema must have: OpenThoughts-114k `metadata`, LMSYS-Chat-1M, plain text.
REQUIRED_COLUMNS = {
    "openthoughts": ("problem", "deepseek_reasoning", "deepseek_solution", "domain"),
    "lmsys": ("conversation",),
    "text": ("text",),
}
DEMO_PREFIX = "demo:"
DEMO_ROWS = 1000  # rows a demo source generates when `rows` is not set


@dataclass
class SourceConfig:
    format: str
    """Schema of the rows: openthoughts, lmsys or text."""
    path: str
    """`demo:reasoning` / `demo:chat`, a hub dataset id, a .jsonl/.json/.parquet file, or a save_to_disk dir."""
    name: str | None = None
    """Hub config name (OpenThoughts-114k: `metadata`)."""
    split: str = "train"
    """Split to read."""
    revision: str | None = None
    """Hub commit of the dataset."""
    rows: int | None = None
    """Use at most this many rows (for demo sources: how many to generate)."""
    domains: list[str] | None = None
    """Keep only rows of these domains (openthoughts)."""
    fraction: float = 0.0
    """Share of the training mix's sequences taken from this source (fractions sum to 1)."""
    seed: int = 0
    """Generator seed for demo sources."""
    streaming: bool = False
    """Hub sources: stream and keep the first `rows` rows instead of downloading the whole dataset (SlimPajama)."""
    final_eos: bool = False
    """lmsys, r1 format: end the last assistant turn with <｜end▁of▁sentence｜> too (the released code does not)."""
    extra: dict = field(default_factory=dict)
    """Keyword arguments passed through to datasets.load_dataset."""



def source_configs(data: DictConfig) -> dict[str, SourceConfig]:
    """The `data.sources` of a run's config, by name."""
    return {name: SourceConfig(**OmegaConf.to_container(src, resolve=True)) for name, src in data.sources.items()}

def _demo(cfg: SourceConfig) -> datasets.Dataset:
    from reasoning_sae.data import demo

    kind = cfg.path[len(DEMO_PREFIX) :]
    makers = {"reasoning": demo.reasoning_rows, "chat": demo.chat_rows}
    if kind not in makers:
        raise UserError(f"unknown demo source {cfg.path!r}: use demo:reasoning or demo:chat")
    return datasets.Dataset.from_list(makers[kind](cfg.rows or DEMO_ROWS, seed=cfg.seed))


def _empty_error(path: Path) -> UserError:
    return UserError(f"data source {str(path)!r} is empty: point it at a dataset with rows")


def _looks_empty(path: Path) -> bool:
    if path.is_dir():
        return not any(p.stat().st_size > 0 for p in path.rglob("*.arrow"))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows == 0
    return not path.read_text().strip()


def _local(path: Path, cfg: SourceConfig) -> datasets.Dataset:
    """A local copy; a file datasets or Arrow cannot parse is one line naming it, not their traceback."""
    import pyarrow

    progress, logger = datasets.is_progress_bar_enabled(), logging.getLogger("datasets")
    level = logger.level
    datasets.disable_progress_bar()  # a bar or datasets' own error log on stderr would stand beside the one line
    logger.setLevel(logging.CRITICAL)
    try:
        return _read_local(path, cfg)
    except (datasets.exceptions.DatasetGenerationError, pyarrow.ArrowException, UnicodeDecodeError, ValueError,
            FileNotFoundError) as err:
        cause = err.__cause__ if isinstance(err, datasets.exceptions.DatasetGenerationError) and err.__cause__ else err
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise UserError(f"data source {str(path)!r} cannot be read as {path.suffix or 'a saved dataset'} ({reason}): "
                        f"point it at a valid .jsonl, .json or .parquet file or a save_to_disk folder") from None
    finally:
        logger.setLevel(level)
        if progress:
            datasets.enable_progress_bar()


def _read_local(path: Path, cfg: SourceConfig) -> datasets.Dataset:
    # datasets fails on empty inputs in several odd ways (IndexError, StopIteration), so check first.
    if _looks_empty(path):
        raise _empty_error(path)
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if cfg.split not in loaded:
                raise UserError(f"{path} has no split {cfg.split!r}: set split to one of {sorted(loaded)}")
            loaded = loaded[cfg.split]
        return loaded
    builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(path.suffix)
    if builder is None:
        raise UserError(f"cannot read {path}: use a .jsonl, .json or .parquet file or a save_to_disk directory")
    return datasets.load_dataset(builder, data_files=str(path), split="train")


def _hub(cfg: SourceConfig) -> datasets.Dataset:
    if cfg.streaming and not cfg.rows:
        raise UserError(f"data source {cfg.path!r} streams (streaming: true): set its rows to how many to keep")
    if not hub_reachable():
        raise UserError(
            f"cannot download dataset {cfg.path!r}: the Hugging Face Hub is unreachable (offline); on a machine "
            f"with network save it with datasets' save_to_disk (or as .parquet/.jsonl) and set its path to that copy"
        )
    if not cfg.streaming:
        return datasets.load_dataset(cfg.path, cfg.name, split=cfg.split, revision=cfg.revision, **cfg.extra)
    stream = datasets.load_dataset(cfg.path, cfg.name, split=cfg.split, revision=cfg.revision, streaming=True,
                                   **cfg.extra)
    return datasets.Dataset.from_generator(lambda: iter(stream.take(cfg.rows)))


def load_source(cfg: SourceConfig) -> datasets.Dataset:
    """The rows of one source, validated and filtered (domains, row cap)."""
    if cfg.format not in REQUIRED_COLUMNS:
        raise UserError(f"unknown source format {cfg.format!r}: use one of {sorted(REQUIRED_COLUMNS)}")
    path = Path(cfg.path).expanduser()
    if cfg.path.startswith(DEMO_PREFIX):
        rows = _demo(cfg)
    elif path.exists():
        rows = _local(path, cfg)
    elif path.suffix in (".jsonl", ".json", ".parquet") or cfg.path.startswith((".", "/", "~")):
        raise UserError(f"data source {cfg.path!r} does not exist: check the path")
    else:
        rows = _hub(cfg)
    return _select(_validate(rows, cfg), cfg)


def _validate(rows: datasets.Dataset, cfg: SourceConfig) -> datasets.Dataset:
    missing = [c for c in REQUIRED_COLUMNS[cfg.format] if c not in rows.column_names]
    if missing:
        raise UserError(
            f"data source {cfg.path!r} lacks column(s) {', '.join(missing)} required by format {cfg.format!r} "
            f"(it has {', '.join(rows.column_names)})"
        )
    if len(rows) == 0:
        raise _empty_error(Path(cfg.path))
    return rows


def _select(rows: datasets.Dataset, cfg: SourceConfig) -> datasets.Dataset:
    if cfg.domains and "domain" in rows.column_names:
        keep = set(cfg.domains)
        rows = rows.filter(lambda domain: domain in keep, input_columns="domain")
        if len(rows) == 0:
            raise UserError(f"data source {cfg.path!r} has no rows in domains {sorted(keep)}: fix its domains")
    if cfg.rows is not None and cfg.rows < len(rows):
        rows = rows.select(range(cfg.rows))
    return rows
