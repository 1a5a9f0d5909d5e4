"""Fig. 3b (share of features per function group) and Table 4 (the groups), from the optional autointerp stage."""

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.figures.common import Artifacts, Item, figure_style, not_run, save_figure, write_data, write_table

AUTOINTERP_MISSING = ("the optional autointerp stage has not run (it needs an LLM endpoint: "
                      "python -m reasoning_sae autointerp)")


def group_shares(groups: list[dict]) -> pd.DataFrame:
    """Per group: its features and their % of all grouped features (a feature in two groups counts in both)."""
    unique = {f for g in groups for f in g["features"]}
    return pd.DataFrame({"group": [g["name"] for g in groups], "n": [len(g["features"]) for g in groups],
                         "pct": [100 * len(g["features"]) / max(len(unique), 1) for g in groups]})


def fig3b(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    """Horizontal bars: % of the interpreted features in each group."""
    title = "Distribution of the interpreted features over the explainer's function groups"
    if not art.has("autointerp", "groups.json"):
        return not_run("fig3b", "Fig. 3b", title, AUTOINTERP_MISSING)
    figure_style()
    import matplotlib.pyplot as plt

    shares = group_shares(art.json("autointerp", "groups.json"))
    fig, ax = plt.subplots(figsize=(5, 0.3 * len(shares) + 1.0))
    ax.barh(range(len(shares)), shares["pct"], color="#1f77b4")
    ax.set_yticks(range(len(shares)), shares["group"].tolist())
    ax.set_ylim(len(shares) - 0.5, -0.5)
    ax.set_xlabel("Percentage of Features in Group")
    files = save_figure(fig, out, "fig3b") + [write_data(out, "fig3b", shares.to_dict("records"))]
    ours = {"n_groups": len(shares), "groups": dict(zip(shares["group"], shares["n"].astype(int), strict=True))}
    return Item("fig3b", "Fig. 3b", title, files, ours=ours)


def behaviour(group: dict) -> str:
    parts = [f"{label}: {group[key].rstrip('.')}." for label, key in (("Strengthening", "strengthening"),
                                                                      ("Weakening", "weakening")) if group.get(key)]
    return " ".join(parts) or "–"


def table4(art: Artifacts, out: Path, opts: DictConfig) -> Item:
    """The explainer's groups: features, possible function, effect type, observed behaviour."""
    title = "Reasoning feature groups from steering-based automatic interpretation"
    if not art.has("autointerp", "groups.json"):
        return not_run("table4", "Table 4", title, AUTOINTERP_MISSING)
    groups = art.json("autointerp", "groups.json")
    frame = pd.DataFrame({"Group": [g["name"] for g in groups],
                          "Features": [", ".join(map(str, g["features"])) for g in groups],
                          "Possible function": [g.get("function") or "–" for g in groups],
                          "Effect type": [g.get("effect_type") or "–" for g in groups],
                          "Observed behavior": [behaviour(g) for g in groups]})
    explainer = art.meta("autointerp").get("summary", {}).get("explainer", "the explainer")
    files, table = write_table(frame, out, "table4", f"Feature groups by {explainer}",
                               column_format="lp{2.2cm}p{3cm}p{2.4cm}p{4.5cm}")
    other = sum(len(g["features"]) for g in groups if g["name"].lower().startswith(("other", "ungrouped")))
    ours = {"n_groups": len(groups), "n_features": len({f for g in groups for f in g["features"]}),
            "n_other_behavior": other, "explainer": explainer}
    return Item("table4", "Table 4", title, files, ours=ours, markdown=table)
