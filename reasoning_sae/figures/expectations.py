"""A committed run's numbers as data with tolerances (`paper/expected/<experiment>/*.yaml`, the conventions of
`paper/expected/README.md`), so that a fresh run on another machine can be told apart from drift.

`measure(art)` reads what a run states: SAE quality, F_R (its size, threshold, best score, which features and which
top 10), the vocabulary and the cells of Tables 1-3, with steered rows named by F_R rank ("F_R #1 γ=2"), not by
feature id, since ids move when features reorder. `write(...)` stores one run's numbers with tolerances derived
from the spread of other runs (seeds, CPU kernels, thread counts); `compare(...)` checks a run against them.

    python -m reasoning_sae.figures.expectations write demo --spread demo_seed1 demo_seed2 demo_avx2
"""

import argparse
import re
import sys
from pathlib import Path

import yaml

from reasoning_sae.errors import UserError
from reasoning_sae.figures.common import Artifacts
from reasoning_sae.paper_expected import EXPECTED_DIR

MARGIN = 2.0  # tolerance = MARGIN x the largest deviation measured: 2-4 reruns only bound the spread loosely
FILES = ("sae_quality", "reasonscore", "vocabulary", "table1", "table2", "table3")
QUALITY = {"l0": ("metrics/l0", 1.0, "active latents per token"),
           "explained_variance": ("metrics/explained_variance", 100.0, "% (SAELens' kind: of the total variance)"),
           "explained_variance_per_dim": ("metrics/explained_variance_per_dim", 100.0, "% (mean over dimensions)"),
           "ce_loss_recovered": ("metrics/ce_loss_score", 100.0, "%"),
           "kl_recovered": ("metrics/kl_div_score", 100.0, "%")}


def expected_dir(experiment: str) -> Path:
    return EXPECTED_DIR / experiment


# ---------------------------------------------------------------------------------------------------- measuring

def measure(art: Artifacts) -> dict:
    """{file: {quantity or table: numbers}} of one run, in the units the expectation files use."""
    from reasoning_sae.figures.scores import fig6_numbers
    from reasoning_sae.figures.steering import results, table1_numbers, table2_numbers

    out: dict = {}
    if art.has("train", "metrics.json"):
        metrics = art.json("train", "metrics.json")
        out["sae_quality"] = {name: _scaled(metrics.get(key), scale) for name, (key, scale, _) in QUALITY.items()}
    numbers = fig6_numbers(art)
    features = art.f_r()
    out["reasonscore"] = {"f_r_size": numbers["F_R"], "tau": numbers["tau"], "max_score": numbers["max_score"],
                          "f_r": features, "f_r_top10": features[:10]}
    out["vocabulary"] = {"words": _words(art)}
    if art.has("evaluate", "results.csv"):
        long = results(art)
        ranks = {f: i + 1 for i, f in enumerate(features)}
        out["table1"] = _cells(table1_numbers(long), lambda row: _rank_row(row, ranks))
        if (long["ban"] != "").any():
            out["table2"] = _cells(table2_numbers(long), lambda row: re.sub(r" \(mean of \d+\)", "", row))
    if art.has("diff", "crosslayer.csv"):
        out["table3"] = _table3(art)
    return out


def _scaled(value, scale: float):
    return None if value is None or value != value else float(value) * scale


def _words(art: Artifacts) -> list[str]:
    from reasoning_sae.figures.vocabulary import vocabulary_groups

    return list(vocabulary_groups(art.json("vocab", "vocabulary.json")))


def _rank_row(row: str, ranks: dict[int, int]) -> str:
    """"#6719 γ=2" -> "F_R #1 γ=2" (its rank in F_R); other rows as they are."""
    match = re.fullmatch(r"#(\d+)( .*)", row)
    if not match:
        return row
    rank = ranks.get(int(match.group(1)))
    return f"F_R #{rank}{match.group(2)}" if rank else f"feature #{match.group(1)}{match.group(2)}"


def _cells(frame, key) -> dict:
    return {key(str(row)): {column: _number(frame.loc[row, column]) for column in frame.columns}
            for row in frame.index}


def _number(value):
    return None if value is None or value != value else float(value)


def _table3(art: Artifacts) -> dict:
    table: dict = {}
    for r in art.csv("diff", "crosslayer.csv").itertuples():
        for cls in ("diff", "maybe", "same"):
            table.setdefault(f"layer {int(r.layer)}", {})[f"{r.set} {cls} (%)"] = 100 * float(getattr(r, f"share_{cls}"))
    return table


# ---------------------------------------------------------------------------------------------------- tolerances

def floor(file: str, column: str, settings: dict) -> tuple[float, str]:
    """The least tolerance a quantity gets whatever the measured spread: one step of its granularity."""
    problems, samples = settings.get("problems") or 1, settings.get("samples") or 1
    if file in ("table1", "table2"):
        if "pass@1" in column:
            return 100 / (problems * samples), f"one sample of {problems} x {samples}"
        if "maj@" in column:
            return 100 / problems, f"one problem of {problems}"
        if "words/1k" in column:
            return 1.0, "one word per 1,000 tokens"
        return 0.0, ""
    if file == "table3":
        n = settings.get("n_reasoning", 1) if "reasoning" in column else settings.get("n_random", 1)
        return 100 / n, f"one feature of {n}"
    return 0.0, ""


def tolerance(main: float, others: dict[str, float], least: tuple[float, str]) -> dict:
    """{abs: x, why: ...}: MARGIN x the largest deviation of the other runs from this one, at least `least`."""
    deviations = {name: abs(v - main) for name, v in others.items() if v is not None and main is not None}
    spread = max(deviations.values(), default=0.0)
    bound = max(MARGIN * spread, least[0])
    measured = ", ".join(f"{name} {d:.3g}" for name, d in deviations.items()) or "no other run"
    why = f"measured |Δ|: {measured}; {MARGIN:g} x the largest"
    if least[0] and bound == least[0]:
        why += f", raised to {least[1]}"
    return {"abs": float(f"{bound:.4g}"), "why": why}


def overlap(a: list[int], b: list[int]) -> float:
    """The share of the committed set `a` that the run's set `b` holds."""
    return len(set(a) & set(b)) / len(a) if a else 1.0


# ---------------------------------------------------------------------------------------------------- writing

def write(experiment: str, art: Artifacts, spread: dict[str, Artifacts], settings: dict, source: str) -> list[Path]:
    """The expectation files of `experiment` from run `art`, tolerances from the runs in `spread` ({name: run})."""
    main, others = measure(art), {name: measure(run) for name, run in spread.items()}
    # feature ids name the same latents only in an SAE trained from the same seed: the others' F_R ids are unrelated
    same_sae = {name for name, run in spread.items() if sae_seed(run) == sae_seed(art)}
    folder = expected_dir(experiment)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file in FILES:
        if file not in main:
            continue
        body = _file_body(file, main[file], {n: o.get(file, {}) for n, o in others.items()}, settings, same_sae)
        data = {"name": file, "experiment": experiment, "source": source, "settings": settings, **body}
        path = folder / f"{file}.yaml"
        path.write_text(f"# {experiment}: the committed run's {file.replace('_', ' ')}, with tolerances from the measured "
                        f"spread (reasoning_sae/figures/expectations.py)\n" + yaml.safe_dump(data, sort_keys=False,
                                                                                           allow_unicode=True))
        written.append(path)
    return written


def sae_seed(run: Artifacts):
    return run.config("train").get("sae", {}).get("seed")


def _file_body(file: str, main: dict, others: dict[str, dict], settings: dict, same_sae: set[str]) -> dict:
    if file == "vocabulary":
        return {"words": main["words"]}
    if file in ("sae_quality", "reasonscore"):
        body = {}
        for name, value in main.items():
            if isinstance(value, list):
                shares = {n: overlap(value, o.get(name, [])) for n, o in others.items() if n in same_sae}
                least = min(shares.values(), default=1.0)
                body[name] = {"features": value, "min_overlap": float(f"{max(0.0, 1 - MARGIN * (1 - least)):.3g}"),
                              "why": "measured overlap with the committed set in the reruns of the same SAE seed "
                                     "(other seeds' ids name other latents): " + ", ".join(
                                         f"{n} {s:.2f}" for n, s in shares.items()) + f"; {MARGIN:g} x the largest "
                                                                                       "loss"}
            else:
                body[name] = {"value": value, "unit": QUALITY.get(name, (None, None, ""))[2] or None,
                              "tolerance": tolerance(value, {n: o.get(name) for n, o in others.items()},
                                                     floor(file, name, settings))}
        return body
    columns = list(next(iter(main.values())))
    rows = [[row, *(main[row].get(c) for c in columns)] for row in main]
    tol = {}
    for c in columns:
        bounds = [tolerance(main[row][c], {n: o.get(row, {}).get(c) for n, o in others.items()},
                            floor(file, c, settings)) for row in main if main[row].get(c) is not None]
        worst = max(bounds, key=lambda t: t["abs"], default={"abs": 0.0, "why": "no value"})
        tol[c] = {"abs": worst["abs"], "why": "largest over the rows; " + worst["why"]}
    return {"table": {"key": "row", "columns": ["row", *columns], "tolerance": tol, "rows": rows}}


# ---------------------------------------------------------------------------------------------------- comparing

def load(experiment: str) -> dict[str, dict]:
    folder = expected_dir(experiment)
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def run_model(art: Artifacts) -> str | None:
    return art.config("score").get("model", {}).get("name")


def other_model(art: Artifacts, expected: dict[str, dict]) -> str | None:
    """The committed run's model when this run used another (its numbers are then not comparable), else None."""
    models = {data.get("settings", {}).get("model") for data in expected.values()} - {None}
    return next(iter(models)) if models and run_model(art) not in models else None


def compare(res, art: Artifacts, expected: dict[str, dict]) -> None:
    """Every committed number of `expected` against run `art`, one readable failure line per number outside."""
    ours = measure(art)
    label = f"paper/expected/{art.experiment}"
    for file, data in expected.items():
        have = ours.get(file)
        if have is None:
            res.check(False, f"{label}/{file}.yaml: this run has no {file} (did every stage run?)")
            continue
        if file == "vocabulary":
            res.check(have["words"] == data["words"], f"{label}/vocabulary.yaml: words {have['words']}, committed "
                                                      f"{data['words']}")
        elif "table" in data:
            _compare_table(res, f"{label}/{file}.yaml", data["table"], have)
        else:
            for name, spec in data.items():
                if not isinstance(spec, dict):
                    continue
                if "features" in spec:
                    share = overlap(spec["features"], have.get(name, []))
                    res.check(share >= spec["min_overlap"] - 1e-9,
                              f"{label}/{file}.yaml {name}: overlap {share:.2f} with the committed set, below "
                              f"{spec['min_overlap']}")
                elif "value" in spec:
                    _compare_value(res, f"{label}/{file}.yaml {name}", spec, have.get(name))


def _compare_value(res, name: str, spec: dict, ours) -> None:
    from reasoning_sae.figures.paper_checks import within

    value, bound = spec["value"], spec["tolerance"]["abs"]
    if value is None:
        return
    if ours is None:
        res.check(False, f"{name}: committed {value:.4g}, not measured in this run")
        return
    res.check(within(ours, value, spec["tolerance"]),
              f"{name}: committed {value:.4g} ± {bound:.3g}, this run {ours:.4g} (Δ {ours - value:+.3g}): outside "
              f"the tolerance")


def _compare_table(res, name: str, table: dict, ours: dict) -> None:
    columns = table["columns"][1:]
    for row in table["rows"]:
        key = row[0]
        for column, value in zip(columns, row[1:], strict=True):
            spec = {"value": value, "tolerance": table["tolerance"][column]}
            _compare_value(res, f"{name} row {key!r}, column {column!r}", spec, ours.get(key, {}).get(column))


def check(res, art: Artifacts, expected: dict[str, dict]) -> str:
    """compare() when the committed run is of this run's model; a one-line account of what was done either way."""
    committed = other_model(art, expected)
    label = f"paper/expected/{art.experiment}"
    if committed:
        return f"{label} holds a run of {committed}, this one is of {run_model(art)}: not compared"
    before = len(res.failures)
    compare(res, art, expected)
    failed = len(res.failures) - before
    return (f"{failed} committed numbers outside their tolerances" if failed else "committed numbers reproduced") + \
        f" against {label}"


def summary(res) -> str:
    """The one-line verdict `make reproduce` prints."""
    if res.failures:
        return (f"this run did NOT reproduce the committed results: {len(res.failures)} of {res.checks} numbers "
                f"outside their tolerances (make verify lists them)")
    return f"this run reproduced the committed results: all {res.checks} numbers within their tolerances"


# ---------------------------------------------------------------------------------------------------- CLI

def run_settings(art: Artifacts) -> dict:
    """What the tolerance floors depend on: problems x samples of the evaluation, set sizes of Table 3."""
    bench = art.config("evaluate").get("benchmark", {}) if art.has("evaluate") else {}
    settings = {"model": run_model(art), "problems": bench.get("limit"), "samples": bench.get("repeats")}
    if art.has("diff", "crosslayer.csv"):
        n = art.csv("diff", "crosslayer.csv").groupby("set")["n"].first().to_dict()
        settings.update(n_reasoning=int(n.get("reasoning", 1)), n_random=int(n.get("random", 1)))
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasoning_sae.figures.expectations", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["write", "check"])
    parser.add_argument("experiment")
    parser.add_argument("--artifacts", default="artifacts", help="the artifacts root (paths.artifacts)")
    parser.add_argument("--spread", nargs="+", action="extend", default=[],
                        help="experiment names of reruns under the same root")
    args = parser.parse_args(argv)
    root = Path(args.artifacts)
    try:
        art = _run(root, args.experiment)
        if args.action == "write":
            spread = {name: _run(root, name) for name in args.spread}
            if not spread:
                raise UserError("give --spread: the reruns whose deviations set the tolerances")
            paths = write(args.experiment, art, spread, run_settings(art),
                          source=f"artifacts/{args.experiment} (git {art.meta('score').get('git_commit', '?')[:12]})")
            print("\n".join(str(p) for p in paths))
            return 0
        from reasoning_sae.figures.verify import Result

        res = Result()
        compare(res, art, load(args.experiment))
        print(summary(res))
        print("\n".join(f"  {line}" for line in res.failures))
        return 1 if res.failures else 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(root: Path, experiment: str) -> Artifacts:
    if not (root / experiment / "score" / "meta.json").is_file():
        raise UserError(f"no finished run at {root / experiment}: run make reproduce (EXPERIMENT={experiment}) first")
    return Artifacts(root / experiment)


if __name__ == "__main__":
    sys.exit(main())
