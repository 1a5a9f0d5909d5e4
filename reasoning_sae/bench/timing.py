"""Interleaved timing shared by the benchmarks."""

import statistics
import time
from collections.abc import Callable


def round_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall time of each function in each of `repeats` rounds, after one warm-up round. The functions take turns
    within each round, so that load drifting on the machine affects all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_:  # round 0 is the warm-up
                times[name].append(time.perf_counter() - start)
    return times


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function over `repeats` interleaved rounds (see `round_seconds`)."""
    return {name: statistics.median(t) for name, t in round_seconds(fns, repeats).items()}
