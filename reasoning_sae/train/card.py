"""The model card written beside every SAE the train stage saves (README.md, SAELens' conventions: HF card metadata
with `library_name: saelens`, then base model, hook, data, tokens and quality)."""

import time
from pathlib import Path

from reasoning_sae import __version__

EMBEDDED_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
TEMPLATES = Path(__file__).parent / "templates"


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
    base = EMBEDDED_HUB_IDS.get(model, model if "/" in model and not Path(model).exists() else None)
    hub_data = [d for d in data if "/" in d and not d.startswith(("demo:", "/", "."))]
    card_data = ModelCardData(library_name="saelens", base_model=base, datasets=hub_data or None, license="mit",
                              tags=["sparse-autoencoder", "saelens", "reasoning-sae"])
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
