"""Seeding a run: Lightning's `seed_everything` (torch on every device, numpy and Python's `random`), with nothing left
behind in `os.environ`.

`seed_everything` also exports PL_GLOBAL_SEED (and PL_SEED_WORKERS), which Lightning's DDP setup reads back to seed
again and which the next job of a Hydra multirun, run in the same process, would inherit. `seed_run` puts both
variables back as they were, so a run is seeded exactly once, by its own seed. Importing this module imports neither
torch nor Lightning (the CLI's checks read MAX_SEED)."""

import os

MAX_SEED = 2**32 - 1
"""The largest seed `seed_everything` takes (numpy's limit)."""
SEED_ENV = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


def seed_run(seed: int) -> None:
    """Seed torch, numpy and `random` with `seed` (0 to MAX_SEED), leaving os.environ as it was."""
    from lightning import seed_everything

    before = {name: os.environ.get(name) for name in SEED_ENV}
    try:
        seed_everything(seed, workers=False, verbose=False)
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
