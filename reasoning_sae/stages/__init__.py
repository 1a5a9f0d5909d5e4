"""One module per pipeline stage (DESIGN.md); each has `run(cfg) -> Path` and its `CONFIG_KEYS`."""

# Pipeline order (`reproduce` runs them in turn).
STAGES = ("corpus", "train", "vocab", "score", "interpret", "evaluate", "diff", "figures")
# Runnable by name but not part of `reproduce` (autointerp needs an LLM endpoint).
OPTIONAL = ("autointerp",)
