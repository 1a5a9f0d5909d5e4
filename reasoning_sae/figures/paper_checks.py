"""The paper experiment's numbers against the paper's (`paper/expected/*.yaml`), each within its stated tolerance.

Rows and columns are matched by meaning: our lm-eval tasks to the paper's benchmarks (aime -> aime2024, math ->
math500, gpqa -> gpqa_diamond), `#<id> γ=2` rows to feature ids, maj@4 in % and thinking length in K tokens."""

import re

from reasoning_sae.figures.common import NOT_RUN, Artifacts, Item
from reasoning_sae.figures.scores import fig6_numbers
from reasoning_sae.figures.steering import DEFAULT_ROW, REASON_ROW, results, table1_numbers, table2_numbers

BENCHMARKS = (("aime", "aime2024"), ("math", "math500"), ("gpqa", "gpqa_diamond"))


def benchmark(task: str) -> str | None:
    return next((name for needle, name in BENCHMARKS if needle in task.lower()), None)


def tolerance_text(tol: dict) -> str:
    return f"± {tol['abs']}" if "abs" in tol else f"± {100 * tol['rel']:.0f}%"


def within(ours: float, value: float, tol: dict) -> bool:
    bound = tol["abs"] if "abs" in tol else tol["rel"] * abs(value)
    return abs(ours - value) <= bound + 1e-9


def compare_value(res, name: str, ours: float | None, value, tol: dict) -> None:
    if value is None:
        return
    if ours is None or ours != ours:
        res.check(False, f"{name}: paper {value}, ours not measured")
        return
    res.check(within(ours, value, tol), f"{name}: paper {value} {tolerance_text(tol)}, ours {ours:.4g}: outside the "
                                        f"tolerance")


def compare_table(res, name: str, table: dict, ours: dict) -> None:
    """Every number of an expected table against `ours` ({row key: {column: value}})."""
    columns = table["columns"]
    for row in table["rows"]:
        key = row[0]
        for column, value in zip(columns[1:], row[1:], strict=True):
            if value is None:
                continue
            if key not in ours or column not in ours[key]:
                res.check(False, f"{name} row {key}, {column}: paper {value}, not in our results")
                continue
            compare_value(res, f"{name} row {key}, {column}", ours[key][column], value, table["tolerance"][column])


def steering_numbers(numbers, row_key) -> dict:
    """{row key: {<benchmark>_<maj4|acc>: %, <benchmark>_tokens_k: K}} from one of our Table 1/2 frames."""
    ours: dict = {}
    for row in numbers.index:
        key = row_key(row)
        if key is None:
            continue
        for column in numbers.columns:
            task, rest = column.split(" ", 1)
            name, value = benchmark(task), numbers.loc[row, column]
            if name and rest.startswith("maj@4"):
                ours.setdefault(key, {}).update({f"{name}_maj4": value, f"{name}_acc": value})
            elif name and rest.startswith("tokens"):
                ours.setdefault(key, {})[f"{name}_tokens_k"] = value if "(K)" in rest else value / 1000
    return ours


def table1_key(gamma: float):
    def key(row: str):
        if row == "No steering":
            return "no_steering"
        match = re.fullmatch(r"#(\d+) γ=([\d.]+)", row)
        return int(match.group(1)) if match and float(match.group(2)) == gamma else None
    return key


def table2_key(row: str) -> str | None:
    return {DEFAULT_ROW: "default", REASON_ROW: "reason"}.get(row, "random" if row.startswith("Random") else None)


def headline(res, claims: dict, table1: dict) -> None:
    """The abstract's and introduction's accuracy gains (points) and length changes (%) from our Table 1."""
    base = table1.get("no_steering", {})
    for name, claim in claims.items():
        bench, feature = claim.get("benchmark"), claim.get("feature")
        if feature is None or bench not in {b for _, b in BENCHMARKS}:
            continue
        ours = table1.get(feature, {})
        if claim["unit"] == "points":
            column = f"{bench}_maj4"
            value = ours.get(column, float("nan")) - base.get(column, float("nan"))
        else:
            column = f"{bench}_tokens_k"
            value = 100 * (ours.get(column, float("nan")) / base.get(column, float("nan")) - 1)
        compare_value(res, f"headline {name} (#{feature}, {bench})", value, claim["value"], claim["tolerance"])


def compare(res, art: Artifacts, items: dict[str, Item], feature_ids: bool = True) -> None:
    """Every paper number this experiment measured; optional stages that did not run are noted, not failed.
    `feature_ids`: the SAE is the authors', so rows and claims naming a feature id are compared too."""
    from reasoning_sae.paper_expected import load_expected

    long = results(art)
    t1 = load_expected("table1")
    ours1 = steering_numbers(table1_numbers(long), table1_key(float(t1["settings"]["gamma"])))
    table = t1["table"]
    if not feature_ids:
        table = {**table, "rows": [r for r in table["rows"] if r[0] == "no_steering"]}
        res.notes.append("Table 1's feature rows and the headline claims not compared: feature ids of another SAE "
                         "than the authors'")
    compare_table(res, "Table 1", table, ours1)
    if (long["ban"] != "").any():
        ours2 = steering_numbers(table2_numbers(long), table2_key)
        compare_table(res, "Table 2", load_expected("table2")["table"], ours2)
    if feature_ids:
        headline(res, load_expected("headline")["claims"], ours1)
    f6 = load_expected("fig6")["f_r_size"]
    compare_value(res, "Fig. 6 |F_R|", fig6_numbers(art)["F_R"], f6["value"], f6["tolerance"])
    quality = load_expected("sae_quality")
    if (art.root / "train" / "metrics.json").is_file():
        metrics = art.json("train", "metrics.json")
        compare_value(res, "SAE L0", metrics.get("metrics/l0"), quality["l0"]["value"], quality["l0"]["tolerance"])
        ve = metrics.get("metrics/explained_variance")
        compare_value(res, "SAE variance explained (%)", None if ve is None else 100 * ve,
                      quality["variance_explained"]["value"], quality["variance_explained"]["tolerance"])
    optional = ("fig3b", "fig4", "table3", "table4", "falsify", "explanation_scores")
    not_run = [i.label for i in items.values() if i.key in optional and i.status == NOT_RUN]
    if not_run:
        res.notes.append(f"{', '.join(not_run)} not run (optional stages)")
    if art.has("diff", "presence.csv"):
        presence = art.csv("diff", "presence.csv")
        chosen = art.json("diff", "summary.json").get("main", {}).get("set") == "chosen set"
        ours = {r.trajectory: {"f_r_present_pct": 100 * r.fr_share,
                               **({"manual_present_pct": 100 * r.set_share} if chosen else {})}
                for r in presence.itertuples()}
        table = load_expected("fig4")["table"]
        if not chosen:
            table = {**table, "rows": [[r[0], r[1], None] for r in table["rows"]]}
        compare_table(res, "Fig. 4", table, ours)
    if art.has("diff", "crosslayer.csv"):
        ours = {}
        for r in art.csv("diff", "crosslayer.csv").itertuples():
            for cls in ("diff", "maybe", "same"):
                ours.setdefault(int(r.layer), {})[f"{r.set}_{cls}"] = 100 * getattr(r, f"share_{cls}")
        compare_table(res, "Table 3", load_expected("table3")["table"], ours)
    if items.get("table4") and items["table4"].status != NOT_RUN:
        t4 = load_expected("table4")
        for name in ("n_groups", "n_other_behavior"):
            compare_value(res, f"Table 4 {name}", items["table4"].ours.get(name), t4[name]["value"],
                          t4[name]["tolerance"])
