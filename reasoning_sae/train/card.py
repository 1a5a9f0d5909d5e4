"""The model card written beside every SAE the train stage saves (README.md, SAELens' conventions: HF card metadata
with `library_name: saelens`, then base model, hook, data, tokens and quality)."""

import time
from pathlib import Path

from reasoning_sae import __version__

EMBEDDED_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
TEMPLATES = Path(__file__).parent / "templates"
TAGS = ("sparse-autoencoder", "saelens", "reasoning-sae")


def hub_model(model: str) -> str | None:
    """The hub id of a model setting (the embedded demo model's original), None for a local folder or file."""
    return EMBEDDED_HUB_IDS.get(model, model if "/" in model and not Path(model).exists() else None)


def hub_datasets(data: list[str]) -> list[str]:
    """The corpus sources that are hub dataset ids (not demo:..., not local paths)."""
    return [d for d in data if "/" in d and not d.startswith(("demo:", "/", "."))]


def _pct(value) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}%"


def _fmt(value, digits: int) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def model_card(sae_cfg: dict, metrics: dict, *, model: str, revision: str | None, data: list[str], experiment: str,
               training: dict, commit: str | None, lock: str | None) -> str:
    """README.md for an SAE folder. `sae_cfg`: its cfg.json; `training`: architecture, sparsity, lr, seed, steps,
    batch (activations per step) and tokens; `data`: the corpus sources (hub ids or demo:...)."""
    from huggingface_hub import ModelCard, ModelCardData

    meta = sae_cfg.get("metadata", {})
    hub_data = hub_datasets(data)
    card_data = ModelCardData(library_name="saelens", base_model=hub_model(model), datasets=hub_data or None,
                              license="mit", tags=list(TAGS))
    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATES / "MODEL_CARD.md.j2"), model=model, revision=revision,
        hook=meta.get("hook_name"), layer=meta.get("hook_layer"), d_in=sae_cfg["d_in"], d_sae=sae_cfg["d_sae"],
        data=", ".join(data), context_size=meta.get("context_size"), prepend_bos=meta.get("prepend_bos"),
        exclude_special_tokens=meta.get("exclude_special_tokens"), sink_positions=meta.get("sink_positions", 0),
        world_size=meta.get("world_size", 1), experiment=experiment, metrics=metrics,
        eval_tokens=metrics.get("eval/tokens"), dominated=(metrics.get("metrics/top_dim_variance_share") or 0) > 0.5,
        version=__version__, commit=commit, lock=lock, created=time.strftime("%Y-%m-%d"), pct=_pct, fmt=_fmt,
        **training)
    return str(card) + "\n"


# The quality numbers a release card states for each SAE: its YAML key -> the train stage's metrics.json key.
QUALITY = {"l0": "metrics/l0", "explained_variance": "metrics/explained_variance",
           "ce_loss_recovered": "metrics/ce_loss_score", "kl_recovered": "metrics/kl_div_score"}


def _number(value):
    """A metric for YAML: rounded, and None where it is missing or NaN."""
    return None if value is None or value != value else round(float(value), 6)


def release_card(saes: list[dict], *, repo_id: str, experiment: str, data: list[str], provenance: dict) -> str:
    """README.md at the top of a hub release in SAELens' layout (one folder per SAE id). `saes`: per SAE its `sae_id`,
    `cfg` (cfg.json), `metrics` (the train stage's metrics.json) and `card` (its folder holds the train stage's card);
    `provenance`: `trained_commit`, `trained_lock`, `fingerprint` (the train stage's meta.json) and `commit`, `lock`
    (this checkout's, which published it)."""
    from huggingface_hub import ModelCard, ModelCardData

    rows = []
    for sae in saes:
        meta, metrics = sae["cfg"].get("metadata", {}), sae["metrics"]
        rows.append({"sae_id": sae["sae_id"], "model": meta.get("model_name"), "revision": meta.get("model_revision"),
                     "hook_name": meta.get("hook_name"), "architecture": sae["cfg"].get("architecture", "standard"),
                     "d_in": sae["cfg"]["d_in"], "d_sae": sae["cfg"]["d_sae"],
                     "training_tokens": metrics.get("details/n_training_tokens"),
                     **{key: _number(metrics.get(name)) for key, name in QUALITY.items()}, "card": sae["card"]})
    models = list(dict.fromkeys(r["model"] for r in rows if r["model"]))
    bases = list(dict.fromkeys(b for b in map(hub_model, models) if b))
    hub_data = hub_datasets(data)
    card_data = ModelCardData(
        library_name="saelens", base_model=(bases[0] if len(bases) == 1 else bases) or None,
        datasets=hub_data or None, license="mit", tags=list(TAGS),
        saes=[{k: v for k, v in r.items() if k not in ("card", "revision")} for r in rows])
    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATES / "RELEASE_CARD.md.j2"), rows=rows, repo_id=repo_id,
        first=rows[0]["sae_id"], models=models, experiment=experiment, data=", ".join(data) or "–",
        version=__version__, created=time.strftime("%Y-%m-%d"), pct=_pct, fmt=_fmt, **provenance)
    return str(card) + "\n"
