"""One module per pipeline stage (DESIGN.md); each has `run(cfg) -> Path` and its `CONFIG_KEYS`."""

# Pipeline order. Stages of later issues join this list as they are built.
STAGES = ("corpus", "train", "vocab", "score", "interpret", "evaluate", "diff", "figures")
PLANNED = ()
# Runnable by name but not part of `reproduce` (autointerp needs an LLM endpoint).
OPTIONAL = ("autointerp",)
