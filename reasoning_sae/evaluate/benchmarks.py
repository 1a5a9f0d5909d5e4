"""The evaluation benchmarks: hub or local copies of AIME 2024, MATH-500 and GPQA-Diamond in their hub schemas, the
offline demo benchmark, prompts, and the lm-eval task configs that run them (`task_config`)."""

import csv
import json
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import datasets

from reasoning_sae.errors import UserError

# The released code's prompt for AIME and MATH-500 (also used for the demo benchmark).
MATH_PROMPT = "Please reason step by step, and put your final answer within \\boxed{{}}.\nProblem: {problem}\nAnswer:"
# OpenAI simple-evals' multiple-choice template, as in the released code's GPQA task.
GPQA_PROMPT = (
    "Answer the following multiple choice question. The last line of your response should be of the following "
    "format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering."
    "\n\n{Question}\n\nA) {choice1}\nB) {choice2}\nC) {choice3}\nD) {choice4}"
)
GPQA_FIELDS = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
GPQA_SEED = 0  # simple-evals' random.Random(0); lm-eval's default --seed for Python's random (the released order)
# How GPQA's four options are ordered (`benchmark.gpqa_shuffle`), each reproducing a reference implementation:
#   simple_evals: OpenAI simple-evals gpqa_eval.py (GPQAEval.__init__): rng = random.Random(seed), then per row in file
#     order rng.sample(range(4), 4) indexes [Correct, Incorrect 1, 2, 3] (its first repeat; simple-evals draws a new
#     permutation for each of its n_repeats copies, lm-eval's repeats share one prompt).
#   released: the released lm-eval task (SAE-Reasoning @ 2cbfbff, lm_eval/tasks/gpqa/openai/utils.py process_docs,
#     adapted from s1, whose copy shuffles alike but does not clean): options cleaned by its `preprocess`,
#     [Incorrect 1, 2, 3, Correct] shuffled in place with Python's global random, which lm-eval seeds with --seed
#     (default 0) before it builds the model and the tasks; the letter is the first option equal to the cleaned correct
#     one. Anything that draws from or reseeds that global random in between changes the order: vLLM's in-process
#     worker reseeds it with the model's seed (lm-eval's vllm default 1234), so gpqa_seed=1234 is likely closer to the
#     released vLLM runs; the order they got is not recorded.
GPQA_SHUFFLES = ("simple_evals", "released")


class Benchmark(NamedTuple):
    """Where a benchmark lives on the hub, the split lm-eval evaluates, and the fields its rows need."""

    hub_path: str | None
    hub_name: str | None
    split: str
    fields: tuple[str, ...]


BENCHMARKS = {
    "aime24_nofigures": Benchmark("simplescaling/aime24_nofigures", None, "train", ("problem", "answer")),
    "math500": Benchmark("HuggingFaceH4/MATH-500", None, "test", ("problem", "answer")),
    "gpqa_diamond_openai": Benchmark("Idavidrein/gpqa", "gpqa_diamond", "train", GPQA_FIELDS),
    "reasoning_demo": Benchmark(None, None, "test", ("problem", "answer")),
}

# Demo templates: (kind, problem, operation); every answer is an exact small integer.
_DEMO_TEMPLATES = (  # kind, problem, operation, the task as the demo corpus' traces phrase it
    ("add", "What is {a} + {b}?", "+", "add {a} and {b}"),
    ("sub", "What is {a} - {b}?", "-", "subtract {b} from {a}"),
    ("mul", "What is {a} times {b}?", "*", "multiply {a} by {b}"),
    ("add", "Tom has {a} apples and buys {b} more. How many apples does Tom have now?", "+",
     "find how many apples Tom has now"),
    ("sub", "Sara has {a} candies and gives {b} of them to a friend. How many candies does Sara have left?", "-",
     "find how many candies Sara has left"),
    ("mul", "A box holds {a} pencils. How many pencils are in {b} boxes?", "*", "find how many pencils {b} boxes hold"),
    ("add", "There are {a} birds on a tree and {b} more birds land on it. How many birds are on the tree now?", "+",
     "find how many birds are on the tree now"),
)


def _demo_operands(op: str, rng: random.Random) -> tuple[int, int]:
    if op == "*":
        return rng.randint(2, 9), rng.randint(2, 9)
    a, b = rng.randint(2, 20), rng.randint(1, 20)
    return (max(a, b), min(a, b)) if op == "-" else (a, b)


def demo_problems(n: int = 50, seed: int = 0) -> list[dict]:
    """n easy arithmetic problems in the MATH-500 schema, the same for the same seed. `opening` is the first
    paragraph of a demo-corpus trace for the problem (data/demo/traces.py: "Okay, so I need to ..."), which the
    task writes at the start of the answer when the model opens a thinking block (model.response_prefix)."""
    from reasoning_sae.data.demo.traces import opening

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind, template, op, task = _DEMO_TEMPLATES[rng.randrange(len(_DEMO_TEMPLATES))]
        a, b = _demo_operands(op, rng)
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        symbol = {"*": "\\times"}.get(op, op)
        rows.append({
            "problem": template.format(a=a, b=b),
            "solution": f"${a} {symbol} {b} = {value}$, so the answer is $\\boxed{{{value}}}$.",
            "answer": str(value),
            "subject": f"arithmetic/{kind}",
            "level": 1,
            "unique_id": f"demo/{kind}/{i}.json",
            "opening": opening(random.Random(f"{seed}:demo-opening:{i}"), task.format(a=a, b=b),
                               template.format(a=a, b=b)),
        })
    return rows


def read_rows(path: Path) -> list[dict]:
    """The rows of a .jsonl/.json or .csv file (strings kept as strings: AIME's "023" stays "023")."""
    if not path.is_file():
        raise UserError(f"benchmark file {path} does not exist: check local_path")
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    if path.suffix in (".jsonl", ".json"):
        try:
            text = path.read_text(encoding="utf-8").strip()
            rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UserError(f"benchmark file {path} is not {path.suffix[1:].upper()} ({err}): point it at a copy in "
                            f"the hub schema, one JSON object per line (.jsonl) or a JSON list (.json)") from None
        if not all(isinstance(row, dict) for row in rows):
            raise UserError(f"benchmark file {path} holds something other than JSON objects: one object per row")
        return rows
    raise UserError(f"cannot read benchmark file {path}: use a .jsonl, .json or .csv copy in the hub schema")


def load_local(name: str, path: str | Path) -> datasets.Dataset:
    """A local copy of a benchmark, checked for the fields its task needs."""
    path, bench = Path(path).expanduser(), BENCHMARKS[name]
    rows = read_rows(path)
    if not rows:
        raise UserError(f"benchmark file {path} has no rows: point local_path at a copy of {bench.hub_path}")
    for field in bench.fields:
        if any(field not in row for row in rows):
            raise UserError(
                f"benchmark file {path} lacks field {field!r} needed by {name}: "
                f"convert it to the {bench.hub_path} schema (fields {', '.join(bench.fields)})"
            )
    return datasets.Dataset.from_list(rows)


def _unreachable(name: str) -> UserError:
    return UserError(
        f"cannot download {BENCHMARKS[name].hub_path} for {name}: the Hugging Face Hub is unreachable; pass a local "
        f"copy (benchmark.data_files.<task>=path, task_config({name!r}, local_path=...) or lm-eval's --metadata "
        f"'{{\"local_path\": ...}}')"
    )


def check_source(task: str, local_path: str | Path | None = None) -> None:
    """The task's rows can be had: its local copy reads and has the fields, or the hub answers (before a model loads)."""
    from reasoning_sae.models.loading import hub_reachable

    name = benchmark_of(task)
    if name is None or BENCHMARKS[name].hub_path is None:
        return
    if local_path:
        load_local(name, local_path)
    elif not hub_reachable():
        raise _unreachable(name)


def _hub(name: str) -> datasets.Dataset:
    from reasoning_sae.models.loading import hub_reachable

    bench = BENCHMARKS[name]
    if not hub_reachable():
        raise _unreachable(name)
    return datasets.load_dataset(bench.hub_path, bench.hub_name, split=bench.split)


def load_benchmark(
    name: str,
    /,
    local_path: str | None = None,
    demo_size: int = 50,
    demo_seed: int = 0,
    grading: str | None = None,
    verifier: Mapping | None = None,
    gpqa_shuffle: str = "simple_evals",
    gpqa_seed: int = GPQA_SEED,
    **_: Any,
) -> datasets.DatasetDict:
    """A benchmark as lm-eval's `custom_dataset` returns it: {split: rows}, GPQA's options laid out, every row carrying
    its grading (see grading.py). Other lm-eval metadata is ignored."""
    from reasoning_sae.evaluate.grading import FIELD, Grading

    spec = Grading.from_settings(grading, verifier)
    if name == "reasoning_demo":
        rows = datasets.Dataset.from_list(demo_problems(int(demo_size), int(demo_seed)))
    elif local_path:
        rows = load_local(name, local_path)
    else:
        rows = _hub(name)
    if name == "gpqa_diamond_openai":
        rows = shuffle_choices(rows, gpqa_shuffle, int(gpqa_seed))
    if FIELD in rows.column_names:
        rows = rows.remove_columns(FIELD)
    rows = rows.add_column(FIELD, [spec.to_json()] * len(rows))
    return datasets.DatasetDict({BENCHMARKS[name].split: rows})


def check_gpqa_shuffle(shuffle: str) -> str:
    if shuffle not in GPQA_SHUFFLES:
        raise UserError(f"unknown benchmark.gpqa_shuffle {shuffle!r}: use one of {', '.join(GPQA_SHUFFLES)}")
    return shuffle


def released_preprocess(text: str | None) -> str:
    """The released GPQA task's option cleaning, as it is (it also drops bracketed text such as `[1,2-c]` in IUPAC
    names, which makes all four options of one diamond question read alike)."""
    if text is None:
        return " "
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _simple_evals_layout(rows: datasets.Dataset, seed: int) -> list[tuple[list[str], str]]:
    rng = random.Random(seed)
    layout = []
    for row in rows:
        order = rng.sample(range(4), 4)
        options = [row[f] for f in GPQA_FIELDS[1:]]  # Correct, Incorrect 1, 2, 3
        layout.append(([options[i] for i in order], "ABCD"[order.index(0)]))
    return layout


def _released_layout(rows: datasets.Dataset, seed: int) -> list[tuple[list[str], str]]:
    rng = random.Random(seed)  # the module-level random after lm-eval's random.seed(seed): the same stream
    layout = []
    for row in rows:
        options = [released_preprocess(row[f]) for f in ("Incorrect Answer 1", "Incorrect Answer 2",
                                                          "Incorrect Answer 3", "Correct Answer")]
        rng.shuffle(options)
        layout.append((options, "ABCD"[options.index(released_preprocess(row["Correct Answer"]))]))
    return layout


def shuffle_choices(rows: datasets.Dataset, shuffle: str = "simple_evals", seed: int = GPQA_SEED) -> datasets.Dataset:
    """GPQA rows with the four options in the `shuffle` order (choice1..4) and the correct letter (answer)."""
    layout_of = {"simple_evals": _simple_evals_layout, "released": _released_layout}[check_gpqa_shuffle(shuffle)]
    layout = layout_of(rows.select_columns(list(GPQA_FIELDS[1:])), seed)

    def lay_out(_: dict, index: int) -> dict:
        choices, letter = layout[index]
        return {**{f"choice{j + 1}": c for j, c in enumerate(choices)}, "answer": letter}

    return rows.map(lay_out, with_indices=True)


def _metric(name: str) -> dict:
    return {"metric": name, "aggregation": "mean", "higher_is_better": True}


def metric_list(repeats: int) -> list[dict]:
    """lm-eval metric_list for `repeats` samples per problem: pass@1 and maj@k (see answers.maj_ks)."""
    from reasoning_sae.evaluate.answers import maj_ks

    return [_metric("pass@1"), *(_metric(f"maj@{k}") for k in maj_ks(repeats))]


def sampling_filters(repeats: int) -> list[dict]:
    """Keep all `repeats` samples per problem for process_results (lm-eval's default keeps only the first)."""
    # Named "none" like lm-eval's default filter, so result keys read e.g. "maj@4,none" for every repeats.
    return [{"name": "none", "filter": [{"function": "take_first_k", "k": repeats}]}]


def benchmark_of(task: str) -> str | None:
    """The benchmark (a BENCHMARKS name) a task yaml of ours reads, from its custom_dataset loader."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from reasoning_sae.lm_eval import task_dir

    path = task_dir() / f"{task}.yaml"
    loader = load_yaml(path, resolve_func=True).get("custom_dataset") if path.is_file() else None
    name = getattr(loader, "__name__", "").removeprefix("load_")
    return name if name in BENCHMARKS else None


def task_config(
    name: str,
    local_path: str | Path | None = None,
    max_gen_toks: int | None = None,
    repeats: int | None = None,
    grading: str | None = None,
    verifier: Mapping | None = None,
    gpqa_shuffle: str | None = None,
    gpqa_seed: int | None = None,
    response_prefix: str | None = None,
    **dataset_kwargs: Any,
) -> dict:
    """A complete lm-eval task config (a dict for `simple_evaluate(tasks=[...])`) from our yaml, with overrides.

    local_path: a local copy in the hub schema (.jsonl/.json/.csv) instead of the hub dataset.
    repeats: samples per problem; the metrics become pass@1 and maj@k for k in maj_ks(repeats).
    grading, verifier: how answers are graded (grading.py; checked here, so before any model loads).
    gpqa_shuffle, gpqa_seed: the order of GPQA's options (GPQA_SHUFFLES; ignored by other tasks, but checked).
    response_prefix: text the assistant's turn opens with (lm-eval's gen_prefix: the chat template's generation
        prompt, then this), e.g. `<think>\n` for a model whose template does not open the thinking block itself.
    dataset_kwargs: passed to `load_benchmark`, e.g. demo_size and demo_seed for reasoning_demo.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    from reasoning_sae.evaluate.grading import Grading
    from reasoning_sae.lm_eval import task_dir

    names = sorted(p.stem for p in task_dir().glob("*.yaml"))
    # A name, never a path: the task YAML's `!function` runs Python, so only the shipped task files may load.
    if not isinstance(name, str) or name not in names:
        raise UserError(f"unknown benchmark task {name!r}: use one of {', '.join(names)} (names of the tasks shipped "
                        f"in reasoning_sae/lm_eval/tasks/, not paths)")
    path = task_dir() / f"{name}.yaml"
    cfg = load_yaml(path, resolve_func=True)
    extra = {**(cfg.get("dataset_kwargs") or {}), **dataset_kwargs}
    if local_path is not None:
        extra["local_path"] = str(Path(local_path).expanduser().resolve())
    if grading is not None or verifier is not None:
        spec = Grading.from_settings(grading, verifier)
        extra.update(grading=spec.mode, **({"verifier": spec.verifier.as_dict()} if spec.verifier else {}))
    if gpqa_shuffle is not None:
        check_gpqa_shuffle(gpqa_shuffle)
    if benchmark_of(name) == "gpqa_diamond_openai":
        extra.update({k: v for k, v in (("gpqa_shuffle", gpqa_shuffle), ("gpqa_seed", gpqa_seed)) if v is not None})
    cfg["dataset_kwargs"] = extra or None
    if response_prefix:  # and, for reasoning_demo, the trace's opening paragraph after it (metadata.response_opening)
        cfg["gen_prefix"] = response_prefix + str((cfg.get("metadata") or {}).get("response_opening", ""))
    if max_gen_toks is not None:
        cfg["generation_kwargs"] = {**cfg["generation_kwargs"], "max_gen_toks": int(max_gen_toks)}
    if repeats is not None:
        if repeats < 1:
            raise UserError(f"repeats must be >= 1 (got {repeats}): set the number of samples per problem")
        cfg.update(repeats=repeats, filter_list=sampling_filters(repeats), metric_list=metric_list(repeats))
    return cfg
