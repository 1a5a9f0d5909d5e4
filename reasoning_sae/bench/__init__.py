"""Speed benchmarks (`make bench`): each prints a ratio against a named baseline."""
