"""lm-eval hooks for our task yamls: datasets, prompts and per-document metrics, all from reasoning_sae.evaluate."""

import datasets

from reasoning_sae.evaluate import grading
from reasoning_sae.evaluate.benchmarks import GPQA_PROMPT, MATH_PROMPT, load_benchmark


# custom_dataset: lm-eval calls these with the task's metadata and dataset_kwargs (local_path, demo_size, grading,
# verifier, gpqa_shuffle, gpqa_seed, ...); GPQA's options are laid out there and every row carries its grading.
def load_aime24_nofigures(**kwargs) -> datasets.DatasetDict:
    return load_benchmark("aime24_nofigures", **kwargs)


def load_math500(**kwargs) -> datasets.DatasetDict:
    return load_benchmark("math500", **kwargs)


def load_gpqa_diamond_openai(**kwargs) -> datasets.DatasetDict:
    return load_benchmark("gpqa_diamond_openai", **kwargs)


def load_reasoning_demo(**kwargs) -> datasets.DatasetDict:
    return load_benchmark("reasoning_demo", **kwargs)


def doc_to_text_math(doc: dict) -> str:
    return MATH_PROMPT.format(problem=doc["problem"])


def doc_to_text_gpqa(doc: dict) -> str:
    return GPQA_PROMPT.format(**{k: doc[k] for k in ("Question", "choice1", "choice2", "choice3", "choice4")})


def doc_to_target(doc: dict) -> str:
    return str(doc["answer"])


def _samples(results: list) -> list[str]:
    # With a take_first_k filter each request yields a list of samples; with lm-eval's default, one string.
    return list(results[0]) if isinstance(results[0], list) else list(results)


# process_results: graded as the document's `grading` field says (reasoning_sae.evaluate.grading).
def process_results_math(doc: dict, results: list) -> dict[str, float]:
    return grading.score_math(doc, _samples(results)).metrics()


def process_results_demo(doc: dict, results: list) -> dict[str, float]:
    return grading.score_math(doc, _samples(results), lenient=True).metrics()


def process_results_gpqa(doc: dict, results: list) -> dict[str, float]:
    return grading.score_choice(doc, _samples(results)).metrics()
