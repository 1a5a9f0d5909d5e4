"""`python -m reasoning_sae.figures.verify [EXPERIMENT] [key=value ...]` (`make verify`): are the figures and tables
what the artifacts hold, and (experiment `paper`) are they the paper's numbers within the stated tolerances?

Internal consistency, for every experiment: Tables 1-2 re-derived from the evaluation cells' metrics.json (and
evaluate/results.csv equal to those cells), Fig. 5's table equal to vocabulary.json, Fig. 6's numbers equal to
score's, Fig. 2's words to frequencies.parquet, the interfaces' f_max to interpret's, Fig. 4 / Table 3 to diff's,
Table 4 to autointerp's groups, Tables 5-9's outputs found in the lm-eval samples, every file a real PDF/PNG, the
report naming every item; the copy under paths.paper equal to the built one; every stage artifact and paper/ equal to
their sha256 manifests. Then this run's numbers against the committed run's (paper/expected/<experiment>/, within the
tolerances measured from reruns: figures/expectations.py), where there is one. Exits 1 with one line per
difference (file, row, column, expected, found), 0 with a one-line summary."""

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reasoning_sae.errors import UserError
from reasoning_sae.figures import diffing, expectations, falsify, paper_checks
from reasoning_sae.figures.build import load_items
from reasoning_sae.figures.cells import candidates, cell_metrics, find_cell, samples
from reasoning_sae.figures.common import (NOT_RUN, PAPER_PARTS, PUBLISHED, Artifacts, Item, fmt, load_paper_run,
                                          parse_markdown_table)
from reasoning_sae.figures.examples import OMITTED, first_response
from reasoning_sae.figures.scores import fig6_numbers
from reasoning_sae.figures.steering import TEXT_COLUMNS, results, table1_numbers, table2_numbers
from reasoning_sae.figures.vocabulary import fig2_rows, vocabulary_groups

MAGIC = {".png": b"\x89PNG", ".pdf": b"%PDF"}
OPTIONAL_SOURCES = {"fig3b": ("autointerp", "groups.json"), "table4": ("autointerp", "groups.json"),
                    "fig4": ("diff", "presence.csv"), "table3": ("diff", "crosslayer.csv"),
                    "falsify": ("falsify", "falsify.csv"), "explanation_scores": ("autointerp", "scores.csv")}


@dataclass
class Result:
    """Checks made, the differences found (one readable line each) and notes (what was not checked)."""

    checks: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, ok: bool, message: str) -> bool:
        self.checks += 1
        if not ok:
            self.failures.append(message)
        return ok


def close(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12) or (a != a and b != b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def shown_equal(expected: float, found: str) -> bool:
    """A number printed with d decimals equals `expected` to within half its last digit."""
    if expected is None or expected != expected:
        return found == "–"
    try:
        value = float(found)
    except ValueError:
        return False
    decimals = len(found.split(".")[1]) if "." in found else 0
    return abs(value - expected) <= 0.5 * 10**-decimals + 1e-9


def compare_table(res: Result, path: Path, numbers: pd.DataFrame, source: str) -> None:
    """Every number of `numbers` (rows x columns) as printed in the Markdown table at `path`."""
    table = parse_markdown_table(path.read_text())
    table = table.set_index(table.columns[0])
    res.check(list(table.index) == list(numbers.index),
              f"{path}: rows {list(table.index)}, expected {list(numbers.index)} (from {source})")
    for row in numbers.index:
        for column in numbers.columns:
            if row not in table.index or column not in table.columns:
                res.check(False, f"{path}: row {row!r}, column {column!r}: missing (expected "
                                 f"{fmt(numbers.loc[row, column])} from {source})")
                continue
            found, expected = table.loc[row, column], numbers.loc[row, column]
            res.check(shown_equal(expected, found), f"{path}: row {row!r}, column {column!r}: expected "
                                                    f"{fmt(expected)} (from {source}), found {found}")


def cells_long(art: Artifacts, res: Result) -> pd.DataFrame | None:
    """results.csv rebuilt from the evaluation cells' metrics.json; a failure per (task, label) no cell holds."""
    from reasoning_sae.evaluate.tables import results_frame

    long = results(art)
    records = []
    for (task, label), rows in long.groupby(["task", "label"], sort=False):
        cell = find_cell(art, long, task, label)
        if res.check(cell is not None, f"evaluate/results.csv {task}/{label}: no cell under "
                                       f"{art.root / 'evaluate-cells' / task}/{label}-* holds these numbers"
                                       + _nearest(art, rows, task, label)):
            records.append(cell_metrics(cell))
    if not records:
        return None
    frame = results_frame(records).astype({c: object for c in TEXT_COLUMNS})
    return frame.fillna({c: "" for c in TEXT_COLUMNS})


def _nearest(art: Artifacts, rows: pd.DataFrame, task: str, label: str) -> str:
    """The differences to the closest cell of this task and label (fewest differing metrics)."""
    def diffs(cell: Path) -> list[str]:
        held = cell_metrics(cell).get("metrics", {}).get(task, {})
        return [f"{m}: results.csv {v:.6g}, cell {held.get(m, float('nan')):.6g}"
                for m, v in zip(rows["metric"], rows["value"], strict=True) if not close(v, held.get(m, float("nan")))]

    cells = candidates(art, task, label)
    if not cells:
        return " (there is no such cell: rerun the evaluate stage)"
    best = min(cells, key=lambda c: len(diffs(c)))
    return f" (closest cell {best.name}: {'; '.join(diffs(best)[:3])})"


def check_steering(res: Result, art: Artifacts, roots: list[Path], items: dict[str, Item]) -> None:
    long = cells_long(art, res)
    if long is None:
        return
    for key, numbers in (("table1", table1_numbers), ("table2", table2_numbers)):
        if items.get(key) and items[key].status != NOT_RUN:
            for root in roots:
                compare_table(res, root / "tables" / f"{key}.md", numbers(long), "the evaluation cells' metrics.json")


def check_vocabulary(res: Result, art: Artifacts, built: Path, roots: list[Path]) -> None:
    groups = vocabulary_groups(art.json("vocab", "vocabulary.json"))
    for root in roots:
        table = parse_markdown_table((root / "tables" / "fig5.md").read_text())
        shown = {row["word"]: json.loads(f"[{row['surface forms']}]") for _, row in table.iterrows()}
        for word in groups.keys() | shown.keys():
            res.check(groups.get(word) == shown.get(word), f"{root / 'tables/fig5.md'}: word {word!r}: expected "
                                                           f"{groups.get(word)} (vocab/vocabulary.json), found "
                                                           f"{shown.get(word)}")
    drawn = json.loads((built / "figures" / "fig2.json").read_text())
    rows = fig2_rows(art, len(drawn["words"])).astype({"word": str, "filtered": bool}).to_dict("records")
    res.check(close(drawn["words"], rows), f"{built / 'figures/fig2.json'}: the plotted words differ from "
                                           "vocab/frequencies.parquet: rerun make figures")


def check_data(res: Result, art: Artifacts, built: Path, items: dict[str, Item]) -> None:
    """Figures' plotted numbers (figures/<key>.json) against their artifacts."""
    drawn = json.loads((built / "figures" / "fig6.json").read_text())
    truth = fig6_numbers(art)
    for key, value in truth.items():
        res.check(close(drawn.get(key), value), f"{built / 'figures/fig6.json'}: {key}: expected {value} (score "
                                                f"artifact), found {drawn.get(key)}")
    records = art.json("interpret", "features.json")
    for key, item in items.items():
        if key.startswith(("fig3a", "fig8", "fig9")) and item.status != NOT_RUN:
            for feature, data in json.loads((built / "figures" / f"{key}.json").read_text()).items():
                record = records.get(feature, {})
                for name in ("f_max", "density"):
                    res.check(close(data[name], record.get(name)), f"{built / 'figures' / key}.json: feature "
                              f"{feature} {name}: expected {record.get(name)} (interpret), found {data[name]}")
    if items.get("falsify") and items["falsify"].status != NOT_RUN:
        drawn = json.loads((built / "figures" / "falsify.json").read_text())["groups"]
        res.check(close(drawn, falsify.group_numbers(art.csv("falsify", "falsify.csv"))),
                  f"{built / 'figures/falsify.json'}: the shares differ from falsify/falsify.csv: rerun make figures")
    if items.get("fig4") and items["fig4"].status != NOT_RUN:
        expected = art.csv("diff", "presence.csv")[diffing.FIG4_COLUMNS].to_dict("records")
        res.check(close(json.loads((built / "figures" / "fig4.json").read_text()), expected),
                  f"{built / 'figures/fig4.json'}: differs from diff/presence.csv: rerun make figures")


def check_optional(res: Result, art: Artifacts, roots: list[Path], items: dict[str, Item]) -> None:
    for key, (stage, name) in OPTIONAL_SOURCES.items():
        if art.has(stage, name) and items.get(key) and items[key].status == NOT_RUN:
            res.check(False, f"{items[key].label}: the {stage} artifact exists but the figures were built without it:"
                             f" rerun make figures")
    for root in roots:
        if items.get("table3") and items["table3"].status != NOT_RUN:
            truth = diffing.table3_frame(art.csv("diff", "crosslayer.csv")).set_index("Layer")
            compare_table(res, root / "tables" / "table3.md", truth.map(_number), "diff/crosslayer.csv")
        if items.get("table4") and items["table4"].status != NOT_RUN:
            shown = parse_markdown_table((root / "tables" / "table4.md").read_text())
            found = {r["Group"]: r["Features"] for _, r in shown.iterrows()}
            for group in art.json("autointerp", "groups.json"):
                features = ", ".join(map(str, group["features"]))
                res.check(found.get(group["name"]) == features, f"{root / 'tables/table4.md'}: group "
                          f"{group['name']!r}: expected features {features} (autointerp/groups.json), found "
                          f"{found.get(group['name'])}")


def _number(text: str) -> float | None:
    return None if text == "–" else float(text)


def check_examples(res: Result, art: Artifacts, roots: list[Path], items: dict[str, Item]) -> None:
    """Each shown output is (pieces of) the first sample of its problem in the named cell."""
    for key, item in items.items():
        if not (key.startswith("table") and item.status != NOT_RUN and "doc_id" in item.ours):
            continue
        ours = item.ours
        outputs = []
        for name in ours["cells"]:
            docs = {s["doc_id"]: s for s in samples(art.root / "evaluate-cells" / ours["task"] / name, ours["task"])}
            outputs.append(first_response(docs[ours["doc_id"]]) if ours["doc_id"] in docs else None)
        for root in roots:
            table = parse_markdown_table((root / "tables" / f"{key}.md").read_text()).set_index("")
            for column, truth in zip(table.columns, outputs, strict=True):
                shown = table.loc["Output", column]
                pieces = [p.strip() for p in OMITTED.split(shown)]
                res.check(truth is not None and all(p in truth for p in pieces),
                          f"{root / 'tables' / key}.md: column {column!r}: the output is not the first sample of "
                          f"doc {ours['doc_id']} in evaluate-cells/{ours['task']}/{ours['cells'][0]} or its pair")


def check_files(res: Result, built: Path, items: dict[str, Item]) -> None:
    report = (built / "REPORT.md").read_text() if (built / "REPORT.md").is_file() else ""
    res.check(bool(report), f"{built / 'REPORT.md'}: missing: rerun make figures")
    for item in items.values():
        res.check(f"## {item.label}:" in report, f"{built / 'REPORT.md'}: no section for {item.label}")
        for name in item.files:
            path = built / name
            head = path.read_bytes()[:4] if path.is_file() else b""
            res.check(bool(head) and head.startswith(MAGIC.get(path.suffix, b"")),
                      f"{path}: missing, empty or not a {path.suffix[1:].upper()} file")


def check_published(res: Result, built: Path, paper: Path | None, experiment: str) -> list[Path]:
    """The copy under paths.paper equals the built one when it is this experiment's; the roots to check numbers in."""
    report = paper / "REPORT.md" if paper else None
    if report is None or not report.is_file():
        res.notes.append(f"no published report under {paper}")
        return [built]
    if f"<!-- experiment: {experiment} -->" not in report.read_text().splitlines()[0]:
        res.notes.append(f"{paper} holds another experiment's report; checked {built} only")
        return [built]
    published = sorted(p for p in built.rglob("*") if p.is_file() and p.relative_to(built).parts[0] in PUBLISHED)
    for path in published:
        copy = paper / path.relative_to(built)
        if path.suffix != ".md":  # tables are compared number by number
            res.check(copy.is_file() and copy.read_bytes() == path.read_bytes(),
                      f"{copy}: differs from {path}: rerun make figures")
    return [built, paper]


def check_manifests(res: Result, art: Artifacts, roots: list[Path]) -> None:
    """Every stage artifact and the published copy equal to the sha256 manifests written with them."""
    from reasoning_sae.artifacts import META
    from reasoning_sae.manifest import check_manifest

    stages = sorted(p for p in art.root.iterdir() if (p / META).is_file())
    for stage in stages:
        for problem in check_manifest(stage) or [None]:
            res.check(problem is None, problem or "")
    for root in roots[1:]:  # the published copy (paths.paper)
        for problem in check_manifest(root, PAPER_PARTS) or [None]:
            res.check(problem is None, problem or "")


def verify(artifacts: Path, paper: Path | None = None, against_paper: bool | None = None) -> Result:
    """All checks for the experiment at `artifacts` (artifacts/<experiment>)."""
    art = Artifacts(artifacts)
    built = artifacts / "figures"
    if not (built / "items.json").is_file():
        raise UserError(f"no figures artifact at {built}: run the figures stage first "
                        f"(make figures EXPERIMENT={art.experiment})")
    items = {i.key: i for i in load_items(built)}
    res = Result()
    check_files(res, built, items)
    roots = check_published(res, built, paper, art.experiment)
    check_manifests(res, art, roots)
    check_steering(res, art, roots, items)
    check_vocabulary(res, art, built, roots)
    check_data(res, art, built, items)
    check_optional(res, art, roots, items)
    check_examples(res, art, roots, items)
    committed = expectations.load(art.experiment)
    if committed:
        res.notes.append(expectations.check(res, art, committed))
    run = load_paper_run(built)
    if against_paper if against_paper is not None else bool(run and run.compare):
        paper_checks.compare(res, art, items, feature_ids=against_paper or run.feature_ids)
    elif run and run.miniature:
        res.notes.append(f"a miniature of the paper run on {run.model}: its numbers are not compared with the paper's")
    else:
        res.notes.append("no paper comparison: the model and data differ from the paper's")
    return res


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (exit 2), like the rest of the package."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see {self.prog} -h\n")


def _override(arg: str) -> str:
    if "=" not in arg:
        raise argparse.ArgumentTypeError(f"{arg!r} is not key=value (only the first argument may name the experiment)")
    return arg


def parse_args(argv: list[str] | None) -> tuple[str, list[str]]:
    """The experiment (default demo) and the Hydra overrides of the figures config: `[EXPERIMENT] [key=value ...]`."""
    parser = _OneLineParser(prog="python -m reasoning_sae.figures.verify", description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="?", default="demo", help="conf/experiment/<name> (default: demo)")
    parser.add_argument("overrides", nargs="*", type=_override, metavar="key=value",
                        help="Hydra overrides of the figures config, e.g. paths.artifacts=/data/artifacts")
    args = parser.parse_args(argv)
    if "=" in args.experiment:  # no experiment given: the first argument is already an override
        return "demo", [args.experiment, *args.overrides]
    return args.experiment, args.overrides


def main(argv: list[str] | None = None) -> int:
    experiment, overrides = parse_args(argv)
    try:
        from hydra import compose, initialize_config_dir

        from reasoning_sae.config_check import check_group_choices
        from reasoning_sae.models.config import conf_dir

        check_group_choices([f"experiment={experiment}", *overrides])
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name="figures", overrides=[f"experiment={experiment}", *overrides])
        res = verify(Path(cfg.paths.artifacts) / cfg.experiment_name, Path(cfg.paths.paper))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    what = "; ".join(res.notes)
    if res.failures:
        print(f"verify {experiment}: {len(res.failures)} of {res.checks} checks failed ({what}):")
        print("\n".join(f"  {line}" for line in res.failures))
        return 1
    print(f"verify {experiment}: all {res.checks} checks passed ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
