"""Module attributes imported on first use (PEP 562), so that `python -m reasoning_sae` can check a command and print
a one-line error without importing torch (about 2 s) first."""

import importlib


def exports(package: str, names: dict[str, str]):
    """`__getattr__` and `__dir__` for a package whose attribute `name` lives in module `names[name]`."""
    module_globals = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        module_globals[name] = value
        return value

    def __dir__():
        return sorted({*module_globals, *names})

    return __getattr__, __dir__
