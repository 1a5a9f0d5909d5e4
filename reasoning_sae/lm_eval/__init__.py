"""lm-evaluation-harness integration: the `sae_steered` model (model.py), our tasks (tasks/, for --include_path),
and `python -m reasoning_sae.lm_eval`, the lm_eval CLI with both available."""

from pathlib import Path


def task_dir() -> Path:
    """The directory of our lm-eval task yamls (pass it as `include_path`)."""
    return Path(__file__).resolve().parent / "tasks"


def register(vllm: bool = False) -> None:
    """Register the `sae_steered` model with lm-eval (importing the module does it), and `sae_steered_vllm` when
    asked (importing vLLM takes seconds)."""
    import reasoning_sae.lm_eval.model  # noqa: F401

    if vllm:
        import reasoning_sae.lm_eval.vllm  # noqa: F401
