"""Stage-wise model diffing (v2 Sec. 4.4, Fig. 4): the share of the main SAE's F_R and of a second feature set
present in each trajectory's SAE (decoder cosine >= diff.threshold with some row there: matching.presence)."""

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.diff import matching
from reasoning_sae.diff.config import label, stage_model, trajectories
from reasoning_sae.sae import SparseAutoencoder

PRESENCE_COLUMNS = ["trajectory", "name", "model", "source", "init_from", "fr_present", "fr_total", "fr_share",
                    "set_present", "set_total", "set_share", "fr_median_best_cosine"]


def presence_row(cfg: DictConfig, main: SparseAutoencoder, sae: SparseAutoencoder, trajectory: str,
                 f_r: list[int], chosen: list[int]) -> dict:
    """One trajectory's row of the presence table."""
    dc, t = cfg.diff, trajectory
    p_fr = matching.presence(main, sae, f_r, dc.threshold, dc.chunk)
    p_set = matching.presence(main, sae, chosen, dc.threshold, dc.chunk)
    return {"trajectory": label(t), "name": t, "model": stage_model(cfg, t[-1]),
            "source": dc.stagewise.stages[t[-1]].source, "init_from": label(t[:-1]) or None,
            "fr_present": p_fr.count, "fr_total": len(f_r), "fr_share": p_fr.share,
            "set_present": p_set.count, "set_total": len(chosen), "set_share": p_set.share,
            "fr_median_best_cosine": float(np.median(p_fr.best_cosine)) if len(f_r) else float("nan")}


def presence_table(cfg: DictConfig, main: SparseAutoencoder, stage_saes: dict[str, SparseAutoencoder],
                   f_r: list[int], chosen: list[int]) -> pd.DataFrame:
    """One row per trajectory of diff.stagewise.trajectories (PRESENCE_COLUMNS), in their order."""
    rows = [presence_row(cfg, main, stage_saes[t], t, f_r, chosen) for t in trajectories(cfg)]
    return pd.DataFrame(rows, columns=PRESENCE_COLUMNS)
