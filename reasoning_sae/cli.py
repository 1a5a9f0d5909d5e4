"""`python -m reasoning_sae <stage> [hydra overrides]`: one Hydra app per stage over conf/, plus `reproduce`."""

import importlib
import logging
import sys
import time

from reasoning_sae.errors import UserError
from reasoning_sae.models.config import conf_dir
from reasoning_sae.stages import PLANNED, STAGES

log = logging.getLogger("reasoning_sae")
USAGE = f"""usage: python -m reasoning_sae <stage> [key=value ...] [-m for a Hydra multirun]

stages: {', '.join(STAGES)}, reproduce (all of them in order)
not yet built: {', '.join(PLANNED)}
examples:
  python -m reasoning_sae corpus
  python -m reasoning_sae corpus data.context_size=128 force=true
  python -m reasoning_sae reproduce experiment=paper
  python -m reasoning_sae corpus --cfg job        # print the composed config"""


def run_stage(stage: str, cfg):
    return importlib.import_module(f"reasoning_sae.stages.{stage}").run(cfg)


def reproduce(cfg) -> None:
    timings = []
    for stage in STAGES:
        start = time.time()
        run_stage(stage, cfg)
        timings.append((stage, time.time() - start))
    print("\nstage           seconds")
    for stage, seconds in timings:
        print(f"{stage:<15} {seconds:8.1f}")
    print(f"{'total':<15} {sum(s for _, s in timings):8.1f}")


def _task(stage: str):
    def task(cfg) -> None:
        try:
            reproduce(cfg) if stage == "reproduce" else run_stage(stage, cfg)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(err.exit_code)

    return task


def main(argv: list[str] | None = None) -> int:
    import hydra

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    stage, overrides = argv[0], argv[1:]
    if stage in PLANNED:
        print(f"error: stage {stage!r} is not built yet; available: {', '.join(STAGES)}, reproduce", file=sys.stderr)
        return 2
    if stage not in (*STAGES, "reproduce"):
        print(f"error: unknown stage {stage!r}: use one of {', '.join(STAGES)}, reproduce", file=sys.stderr)
        return 2
    sys.argv = [f"reasoning_sae {stage}", *overrides]
    app = hydra.main(config_path=str(conf_dir()), config_name=stage, version_base="1.3")(_task(stage))
    app()
    return 0
