"""The diff stage's Markdown: Fig. 4 as a table (presence.md) and Table 3's layout (crosslayer.md)."""

import pandas as pd

from reasoning_sae.markdown import markdown_table

NO_LAYERS = "No layers to match (diff.crosslayer: no layer inside the model).\n"


def pct(x: float) -> str:
    """A share as a percentage to one decimal; `-` for nan."""
    return "-" if x != x else f"{100 * x:.1f}"


def fig4(presence: pd.DataFrame, set_name: str, threshold: float) -> str:
    """Fig. 4 as a table: % of F_R and of the chosen set present in each trajectory's SAE."""
    rows = [[r.trajectory, f"{pct(r.fr_share)} ({r.fr_present}/{r.fr_total})",
             f"{pct(r.set_share)} ({r.set_present}/{r.set_total})"] for r in presence.itertuples()]
    return (f"Features of the main SAE present (decoder cosine >= {threshold}) in each stage's SAE, %.\n\n"
            + markdown_table(pd.DataFrame(rows, columns=["Stage", "F_R", set_name])))


def table3(counts: pd.DataFrame, main_layer: int, n_r: int, n_rand: int, tokens: int, model: str,
           similarity: str) -> str:
    """Table 3's layout: per layer, % diff / maybe / same of the reasoning and of the random features."""
    caption = (f"Cross-layer matching from layer {main_layer} of {model}: % of {n_r} reasoning features (F_R) and "
               f"{n_rand} random features, matched by the Hungarian method on decoder "
               f"{'dot products' if similarity == 'dot' else 'cosines'}, matching score over {tokens:,} tokens.")
    rows = []
    for layer, by_layer in counts.groupby("layer"):
        by_set = by_layer.set_index("set")
        rows.append([str(layer), *(pct(by_set.loc[s, f"share_{c}"]) for s in ("reasoning", "random")
                                   for c in ("diff", "maybe", "same"))])
    columns = ["Layer", "Reasoning diff", "maybe", "same", "Random diff", "maybe", "same"]
    return caption + "\n\n" + markdown_table(pd.DataFrame(rows, columns=columns))
