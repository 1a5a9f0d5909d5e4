"""One module per pipeline stage (DESIGN.md); each has `run(cfg) -> Path` and its `CONFIG_KEYS`."""

# Pipeline order (`reproduce` runs them in turn).
STAGES = ("corpus", "train", "vocab", "score", "interpret", "falsify", "evaluate", "diff", "figures")
# Runnable by name; `reproduce` runs autointerp (it needs an LLM endpoint) only when one is given (cli.planned).
OPTIONAL = ("autointerp",)
