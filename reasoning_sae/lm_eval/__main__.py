"""`python -m reasoning_sae.lm_eval ...`: the real lm_eval CLI, with the `sae_steered` model registered and our tasks on
the include path (unless you pass your own --include_path).

  python -m reasoning_sae.lm_eval --model sae_steered \\
      --model_args pretrained=smollm2-135m-instruct,sae=artifacts/demo/train/sae,features=1999,gamma=2 \\
      --tasks reasoning_demo --apply_chat_template --log_samples --output_path out/
"""

import sys

from reasoning_sae.lm_eval import register, task_dir

SUBCOMMANDS_WITH_TASKS = ("run", "ls", "validate")


def with_our_tasks(argv: list[str]) -> list[str]:
    """lm_eval's argv with `--include_path <our tasks>` added where the subcommand takes one and none is given."""
    if not argv or argv[0] in ("-h", "--help"):
        return argv
    command = argv[0] if argv[0] in SUBCOMMANDS_WITH_TASKS else None
    if argv[0] not in SUBCOMMANDS_WITH_TASKS and argv[0].startswith("-"):
        argv, command = ["run", *argv], "run"  # lm_eval's legacy form without a subcommand
    if command and not any(a == "--include_path" or a.startswith("--include_path=") for a in argv):
        argv = [*argv, "--include_path", str(task_dir())]
    return argv


def main(argv: list[str] | None = None) -> None:
    from lm_eval.__main__ import cli_evaluate

    argv = sys.argv[1:] if argv is None else argv
    register(vllm=any("sae_steered_vllm" in a for a in argv))
    sys.argv = ["lm_eval", *with_our_tasks(argv)]
    cli_evaluate()


if __name__ == "__main__":
    main()
