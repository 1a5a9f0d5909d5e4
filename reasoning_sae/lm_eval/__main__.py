"""`python -m reasoning_sae.lm_eval ...`: the real lm_eval CLI, with the `sae_steered` model registered and our tasks on
the include path (unless you pass your own --include_path).

  python -m reasoning_sae.lm_eval --model sae_steered \\
      --model_args pretrained=smollm2-135m-instruct,sae=artifacts/demo/train/sae,features=1999,gamma=2 \\
      --tasks reasoning_demo --apply_chat_template --log_samples --output_path out/

Without --device the model runs on cuda:0 where CUDA is available and on the CPU elsewhere (lm-eval itself
defaults to cuda:0). Bad input (a missing SAE, a malformed model arg, a cuda device without CUDA) is one line
`error: ...` on stderr and exit code 2, before lm-eval reads its tasks or any model loads.
"""

import argparse
import logging
import sys

from reasoning_sae.errors import UserError
from reasoning_sae.lm_eval import register, task_dir

SUBCOMMANDS_WITH_TASKS = ("run", "ls", "validate")
OUR_MODELS = ("sae_steered", "sae_steered_vllm")
log = logging.getLogger("reasoning_sae.lm_eval")


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


def _config_sets_device(path: str | None) -> bool:
    """Whether a `--config` YAML names a device."""
    if not path:
        return False
    import yaml

    try:
        with open(path) as handle:
            config = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return False  # lm-eval reports the unreadable config itself
    return isinstance(config, dict) and config.get("device") is not None


def default_device(args: argparse.Namespace, cuda_available: bool) -> None:
    """`run` without a device on a machine without CUDA runs on the CPU.

    lm-eval's `run` defaults to `--device cuda:0`, which on a CPU-only machine reaches our model as if the user had
    asked for CUDA and fails deep in torch ("Torch not compiled with CUDA enabled"). A device the user names (on the
    command line or in --config) is kept as given: a cuda device without CUDA is then one `error:` line."""
    if cuda_available or getattr(args, "command", None) != "run" or getattr(args, "device", None) is not None:
        return
    if _config_sets_device(getattr(args, "config", None)):
        return
    log.info("no CUDA device here: running on the CPU (lm-eval's default --device is cuda:0; pass --device to choose)")
    args.device = "cpu"


def check_our_model_args(args: argparse.Namespace) -> None:
    """`--model_args` of our models checked before lm-eval reads its tasks and loads the model (seconds, not a model
    load, to learn of a typo); the model checks them again when lm-eval builds it."""
    if getattr(args, "command", None) != "run" or getattr(args, "model", None) not in OUR_MODELS:
        return
    from reasoning_sae.lm_eval.model import check_model_args, check_vllm_args

    model_args = dict(getattr(args, "model_args", None) or {})
    if args.model == "sae_steered":
        model_args.setdefault("device", args.device)
    else:  # vLLM's own args; dtype takes vLLM's names and vLLM ignores device
        check_vllm_args(**model_args)
        model_args.pop("dtype", None)
        model_args.pop("device", None)
    check_model_args(**model_args)


def _show_our_logs() -> None:
    """Our INFO lines (the device, the CPU batch size) on stderr, beside lm-eval's own."""
    ours = logging.getLogger("reasoning_sae")
    if not ours.handlers and not logging.getLogger().handlers:  # nobody configured logging: lm-eval's CLI doesn't
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s [%(name)s] %(message)s",
                                               "%Y-%m-%d:%H:%M:%S"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    # lm_eval.__main__.cli_evaluate, with our checks between parsing the arguments and running them
    import torch
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    argv = sys.argv[1:] if argv is None else argv
    try:
        register(vllm=any("sae_steered_vllm" in a for a in argv))
        setup_logging()
        _show_our_logs()
        sys.argv = ["lm_eval", *with_our_tasks(argv)]
        parser = HarnessCLI()
        args = parser.parse_args()
        default_device(args, torch.cuda.is_available())
        check_our_model_args(args)
        parser.execute(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
