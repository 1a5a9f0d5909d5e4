"""Evaluation: benchmarks and their lm-eval task configs (benchmarks), answer extraction and grading (answers)."""
