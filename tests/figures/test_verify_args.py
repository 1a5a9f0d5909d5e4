"""The command line of `python -m reasoning_sae.figures.verify`: `[EXPERIMENT] [key=value ...]`."""

import subprocess
import sys

import pytest

from reasoning_sae.figures.verify import parse_args


@pytest.mark.parametrize(("argv", "parsed"), [
    ([], ("demo", [])),
    (["paper"], ("paper", [])),
    (["paths.artifacts=/a"], ("demo", ["paths.artifacts=/a"])),
    (["paper", "paths.artifacts=/a", "paths.paper=/p"], ("paper", ["paths.artifacts=/a", "paths.paper=/p"])),
])
def test_the_experiment_is_optional_and_comes_before_the_overrides(argv, parsed):
    assert parse_args(argv) == parsed


@pytest.mark.parametrize(("argv", "says"), [
    (["paper", "demo"], "'demo' is not key=value (only the first argument may name the experiment)"),
    (["paths.artifacts=/a", "paper"], "'paper' is not key=value"),
    (["--strict"], "unrecognized arguments: --strict"),
])
def test_a_bad_argument_is_one_line_and_exit_2(argv, says, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: ") and says in err and err.rstrip().endswith("reasoning_sae.figures.verify -h")


def test_help_names_the_arguments():
    run = subprocess.run([sys.executable, "-m", "reasoning_sae.figures.verify", "-h"], capture_output=True, text=True)
    assert run.returncode == 0 and "[experiment] [key=value ...]" in run.stdout and "(`make verify`)" in run.stdout
