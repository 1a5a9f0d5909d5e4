"""Per-feature dashboard records (paper Sec. 4.2, Figs. 3, 8, 9: the Bricken et al. / SAEDashboard interface).

One LM pass over the scoring corpus; for the selected features only, streaming statistics whose memory grows with the
number of features, never with the corpus: f_max and where it occurs, the top-N activating contexts (a running
top-N merged batch by batch), samples across activation quantiles, the firing density with a histogram of the
non-zero activations, and (from the weights alone) the logit effects of each decoder direction.

Activations are in the SAE's own units (`sae.encode`, the units steering multiplies `f_max` by), not decoder-norm
folded as SAEDashboard shows them.
"""

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from reasoning_sae.errors import UserError

LOG10_EDGES = torch.linspace(-6, 4, 201)  # fine log10 bins for the density histogram, cropped/merged for display
DISPLAY_BINS = 40
HELD_OUT = "held_out.json"  # the interpret stage's held-out contexts, {feature: {activating, non_activating}}


class FeatureStream:
    """Running statistics of G selected features over batches of whole sequences.

    Quantile samples use a bottom-R sample by random key (a reservoir sample without replacement): every non-zero
    occurrence gets a uniform key and the R smallest keys are kept with their context windows. The kept set is a
    uniform sample of all non-zero occurrences, so its quantiles estimate the band edges and, inside each band, its
    entries are uniform over that band's occurrences. One pass, memory G * R * window, no second LM pass."""

    def __init__(self, n_features: int, top_n: int = 20, window: tuple[int, int] = (24, 8), reservoir: int = 1024,
                 seed: int = 0, held_out: int = 0):
        self.n_features, self.top_n, self.reservoir, self.held_out = n_features, top_n, reservoir, held_out
        self.before, self.after = window
        self.width = self.before + self.after + 1
        self.gen = torch.Generator().manual_seed(seed)
        # silent windows draw from their own generator, so the reservoir (and the dashboards) stay as without them
        self.quiet_gen = torch.Generator().manual_seed(seed + 1)
        self.tokens, self.fires_G = 0, torch.zeros(n_features, dtype=torch.long)
        self.hist_GH = torch.zeros(n_features, len(LOG10_EDGES) - 1, dtype=torch.long)
        self.top = self._empty()   # (act_GR, seq_GR, pos_GR, win_GRS), best first
        self.res = self._empty()   # (key_GR, seq_GR, pos_GR, win_GRS, act_GR), smallest key first
        self.res = (*self.res, torch.zeros(n_features, 0))
        self.quiet = self._empty()[:3]  # (key_GQ, seq_GQ, pos_GQ): centres of windows where the feature is 0

    def _empty(self):
        G = self.n_features
        return (torch.zeros(G, 0), torch.zeros(G, 0, dtype=torch.long), torch.zeros(G, 0, dtype=torch.long),
                torch.zeros(G, 0, self.width))

    def update(self, acts_BSG: torch.Tensor, keep_BS: torch.Tensor, seq_offset: int) -> None:
        """Add a batch: activations [B, S, G] of sequences seq_offset.. ; ignored tokens (keep False) never count."""
        acts_BSG = acts_BSG.float().cpu() * keep_BS.cpu()[..., None]
        B, S, G = acts_BSG.shape
        self.tokens += int(keep_BS.sum())
        fires_BSG = acts_BSG > 0
        self.fires_G += fires_BSG.sum((0, 1))
        b, s, g = fires_BSG.nonzero(as_tuple=True)
        H = self.hist_GH.shape[1]
        bins = torch.bucketize(acts_BSG[b, s, g].log10(), LOG10_EDGES[1:-1])
        self.hist_GH += torch.bincount(g * H + bins, minlength=G * H).view(G, H)
        # windows: pad the sequence axis with NaN so a window clipped at either end stays aligned
        padded_BSG = F.pad(acts_BSG.permute(0, 2, 1), (self.before, self.after), value=math.nan).permute(0, 2, 1)
        g_G11 = torch.arange(G)[:, None, None]

        def windows(idx_GR: torch.Tensor) -> torch.Tensor:
            b_GR, s_GR = idx_GR // S, idx_GR % S
            return padded_BSG[b_GR[..., None], s_GR[..., None] + torch.arange(self.width), g_G11]

        acts_GN = acts_BSG.reshape(B * S, G).T
        vals_GR, idx_GR = acts_GN.topk(min(self.top_n, B * S), dim=1)
        new = (vals_GR, idx_GR // S + seq_offset, idx_GR % S, windows(idx_GR))
        act, seq, pos, win = (torch.cat(pair, 1) for pair in zip(self.top, new, strict=True))
        act, order = act.topk(min(self.top_n, act.shape[1]), dim=1)
        self.top = (act, seq.gather(1, order), pos.gather(1, order), win[torch.arange(G)[:, None], order])

        keys_GN = torch.rand(G, B * S, generator=self.gen).masked_fill(~fires_BSG.reshape(B * S, G).T, math.inf)
        keys_GR, idx_GR = keys_GN.topk(min(self.reservoir, B * S), dim=1, largest=False)
        new = (keys_GR, idx_GR // S + seq_offset, idx_GR % S, windows(idx_GR), acts_GN.gather(1, idx_GR))
        key, seq, pos, win, act = (torch.cat(pair, 1) for pair in zip(self.res, new, strict=True))
        key, order = key.topk(min(self.reservoir, key.shape[1]), dim=1, largest=False)
        rows = torch.arange(G)[:, None]
        self.res = (key, seq.gather(1, order), pos.gather(1, order), win[rows, order], act.gather(1, order))
        if self.held_out:
            self._update_quiet(fires_BSG, keep_BS.cpu(), seq_offset)

    def _update_quiet(self, fires_BSG: torch.Tensor, keep_BS: torch.Tensor, seq_offset: int) -> None:
        """A bottom-Q sample by random key of the kept positions whose whole window has the feature at 0: the silent
        contexts held out for scoring (delphi's random non-activating windows, delphi/latents/constructors.py).
        Q = 4 * held_out leaves spares for dropping overlapping windows."""
        B, S, G = fires_BSG.shape
        fires_BGS = F.pad(fires_BSG.permute(0, 2, 1).float(), (self.before, self.after))
        quiet_BGS = (F.max_pool1d(fires_BGS, self.width, stride=1) == 0) & keep_BS.bool()[:, None, :]
        keys_GN = torch.rand(G, B * S, generator=self.quiet_gen).masked_fill(
            ~quiet_BGS.permute(0, 2, 1).reshape(B * S, G).T, math.inf)
        keys_GQ, idx_GQ = keys_GN.topk(min(4 * self.held_out, B * S), dim=1, largest=False)
        new = (keys_GQ, idx_GQ // S + seq_offset, idx_GQ % S)
        key, seq, pos = (torch.cat(pair, 1) for pair in zip(self.quiet, new, strict=True))
        key, order = key.topk(min(4 * self.held_out, key.shape[1]), dim=1, largest=False)
        self.quiet = (key, seq.gather(1, order), pos.gather(1, order))

    def histogram(self, g: int) -> dict:
        """Log-spaced histogram of feature g's non-zero activations, cropped to its range, at most DISPLAY_BINS bins."""
        counts = self.hist_GH[g]
        nz = counts.nonzero().flatten()
        if len(nz) == 0:
            return {"edges": [], "counts": []}
        lo, span = int(nz[0]), int(nz[-1]) + 1 - int(nz[0])
        step = math.ceil(span / DISPLAY_BINS)
        n_bins = math.ceil(span / step)
        fine = F.pad(counts[lo:], (0, max(0, lo + n_bins * step - len(counts))))[: n_bins * step]
        width = float(LOG10_EDGES[1] - LOG10_EDGES[0]) * step
        edges = float(LOG10_EDGES[lo]) + width * torch.arange(n_bins + 1, dtype=torch.double)
        return {"edges": (10**edges).tolist(), "counts": fine.view(n_bins, step).sum(1).tolist()}

    def records(self, features: Sequence[int], token_ids: np.ndarray, tokenizer, bands: int = 4,
                per_band: int = 5) -> dict[int, dict]:
        """One record per feature (JSON-ready): f_max, density, histogram, top contexts, quantile bands."""
        out = {}
        for g, feature in enumerate(features):
            top = [self._context(token_ids, tokenizer, *(t[g, i] for t in self.top))
                   for i in range(self.top[0].shape[1]) if self.top[0][g, i] > 0]
            keys_r, seq, pos, win, act = (t[g] for t in self.res)
            live = torch.isfinite(keys_r)
            samples, band_r = [], None
            if live.any():
                act_r, seq_r, pos_r, win_r = act[live], seq[live], pos[live], win[live]
                edges = torch.quantile(act_r.double(), torch.linspace(0, 1, bands + 1, dtype=torch.double))
                band_r = torch.bucketize(act_r.double(), edges[1:-1], right=True)
                for band in reversed(range(bands)):  # highest band first, as the dashboards list them
                    picks = band_r.eq(band).nonzero().flatten()[:per_band]  # random: kept in key order
                    picks = picks[act_r[picks].argsort(descending=True)].tolist()
                    samples.append({"band": band, "low": float(edges[band]), "high": float(edges[band + 1]),
                                    "examples": [self._context(token_ids, tokenizer, act_r[i], seq_r[i], pos_r[i],
                                                               win_r[i]) for i in picks]})
            fires = int(self.fires_G[g])
            out[int(feature)] = {
                "feature": int(feature), "f_max": top[0]["activation"] if top else 0.0,
                "f_max_at": {key: top[0][key] for key in ("sequence", "position", "token")} if top else None,
                "fires": fires, "tokens": self.tokens, "density": fires / max(self.tokens, 1),
                "histogram": self.histogram(g), "top_contexts": top, "quantiles": samples,
            }
            if self.held_out:
                out[int(feature)]["held_out"] = self._held_out(g, token_ids, tokenizer, band_r, bands, per_band, top)
        return out

    def _held_out(self, g: int, token_ids: np.ndarray, tokenizer, band_r: torch.Tensor | None, bands: int,
                  per_band: int, top: list[dict]) -> dict[str, list[dict]]:
        """Contexts kept for scoring explanations, none shown in the dashboards and no two overlapping: `held_out`
        activating ones spread evenly over the quantile bands (delphi samples its test examples across activation
        quantiles, delphi/latents/samplers.py), each band's in random order after the `per_band` the dashboards show,
        and `held_out` silent ones (the feature is 0 across the window)."""
        taken: dict[int, list[int]] = {}

        def pick(candidates, quota: int) -> list:  # in order, skipping overlaps with contexts shown or held out
            picked = []
            for i, seq, pos in candidates:
                if len(picked) == quota:
                    break
                if all(abs(pos - p) > self.before + self.after for p in taken.get(seq, [])):
                    taken.setdefault(seq, []).append(pos)
                    picked.append(i)
            return picked

        for c in top:
            taken.setdefault(c["sequence"], []).append(c["position"])
        activating = []
        if band_r is not None:
            keys_r, seq, pos, win, act = (t[g] for t in self.res)
            live = torch.isfinite(keys_r)
            act_r, seq_r, pos_r, win_r = act[live], seq[live], pos[live], win[live]
            queues = [band_r.eq(band).nonzero().flatten().tolist() for band in reversed(range(bands))]
            for queue in queues:
                for i in queue[:per_band]:
                    taken.setdefault(int(seq_r[i]), []).append(int(pos_r[i]))
            for b, queue in enumerate(queues):  # the remainder goes to the highest bands
                quota = self.held_out // bands + (b < self.held_out % bands)
                picks = pick(((i, int(seq_r[i]), int(pos_r[i])) for i in queue[per_band:]), quota)
                activating += [{**self._context(token_ids, tokenizer, act_r[i], seq_r[i], pos_r[i], win_r[i]),
                                "band": bands - 1 - b} for i in picks]
        keys_q, seq_q, pos_q = (t[g] for t in self.quiet)
        silent = [((int(s), int(p)), int(s), int(p)) for k, s, p in zip(keys_q, seq_q, pos_q, strict=True)
                  if math.isfinite(k)]
        zeros = torch.zeros(self.width)
        quiet = [self._context(token_ids, tokenizer, 0.0, s, p, zeros) for s, p in pick(silent, self.held_out)]
        return {"activating": activating, "non_activating": quiet}

    def _context(self, token_ids: np.ndarray, tokenizer, act, seq, pos, win_S) -> dict:
        """The window as text pieces (text_pieces), each shaded by the largest activation of its tokens."""
        seq, pos = int(seq), int(pos)
        S = token_ids.shape[1]
        lo, hi = max(0, pos - self.before), min(S, pos + self.after + 1)
        offset = pos - self.before
        token_acts = [round(float(a), 5) for a in win_S[lo - offset : hi - offset]]
        pieces, owner = text_pieces(tokenizer, token_ids[seq, lo:hi].tolist())
        acts = [max(a for a, j in zip(token_acts, owner, strict=True) if j == piece) for piece in range(len(pieces))]
        center = owner[pos - lo]
        return {"sequence": seq, "position": pos, "activation": float(act), "token": pieces[center],
                "tokens": pieces, "acts": acts, "center": center, "max_index": int(np.argmax(acts))}


def text_pieces(tokenizer, ids: list[int]) -> tuple[list[str], list[int]]:
    """`ids` decoded as a whole and cut at the token boundaries that fall between characters: the pieces, and for
    each token the index of the piece holding it. A character whose bytes span several tokens (byte-level BPE splits
    accents, CJK and emoji) is one piece, so nothing shows as U+FFFD; partial characters cut off at either edge of
    the window are dropped. Decoding growing prefixes is how vLLM detokenizes incrementally: no tokenizer-specific
    byte tables, so SentencePiece and byte-level BPE alike."""
    pieces, owner, emitted = [], [], ""
    for i in range(len(ids)):
        owner.append(len(pieces))
        text = tokenizer.decode(ids[: i + 1], clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd") and i + 1 < len(ids):
            continue  # an unfinished character: this token's bytes join the next piece
        pieces.append(text[len(emitted):])
        emitted = text
    if pieces:
        pieces[0] = pieces[0].lstrip("\ufffd")
        pieces[-1] = pieces[-1].rstrip("\ufffd")
    return pieces, owner


def final_norm_weight(model) -> torch.Tensor | None:
    """The elementwise weight of the final norm before the unembedding (Llama/Qwen/Mistral `norm`, GPT-2 `ln_f`)."""
    base = getattr(model, "base_model", model)
    norm = getattr(base, "norm", None)
    norm = getattr(base, "ln_f", None) if norm is None else norm
    return getattr(norm, "weight", None)


@torch.no_grad()
def logit_effects(model, tokenizer, W_dec_GD: torch.Tensor, k: int = 10, bins: int = 30) -> list[dict]:
    """Direct logit effect of each decoder row: (W_dec[i] * norm.weight) @ W_U^T over the vocabulary.

    An approximation, as in Bricken et al. and SAEDashboard: the final RMSNorm's division by the residual's RMS
    (which depends on the whole residual, not on the feature) is ignored; only its elementwise weight is applied."""
    W_U_VD = model.get_output_embeddings().weight.float()
    dirs_GD = W_dec_GD.float().to(W_U_VD.device)
    norm_D = final_norm_weight(model)
    if norm_D is not None:
        dirs_GD = dirs_GD * norm_D.float().to(W_U_VD.device)
    effects_GV = (dirs_GD @ W_U_VD.T).cpu()
    k = min(k, effects_GV.shape[1])
    out = []
    for row_V in effects_GV:
        top, bottom = row_V.topk(k), row_V.topk(k, largest=False)
        counts, edges = torch.histogram(row_V, bins=bins)
        out.append({
            "top": [{"id": int(i), "token": tokenizer.decode([int(i)]), "value": float(v)} for v, i in zip(*top)],
            "bottom": [{"id": int(i), "token": tokenizer.decode([int(i)]), "value": float(v)} for v, i in zip(*bottom)],
            "histogram": {"edges": edges.tolist(), "counts": [int(c) for c in counts.tolist()]},
        })
    return out


@torch.inference_mode()
def feature_records(lm, sae, token_ids, features: Sequence[int], *, hook: str | None = None, top_n: int = 20,
                    window: tuple[int, int] = (24, 8), bands: int = 4, per_band: int = 5, reservoir: int = 1024,
                    logit_k: int = 10, ignore_token_ids: Sequence[int] = (), seed: int = 0,
                    batch_sequences: int = 8, progress: bool = False, sink_positions: int = 0,
                    held_out: int = 0) -> dict[int, dict]:
    """Dashboard records of `features` over `token_ids` [n_sequences, seq], from one LM pass; keyed by feature id.
    held_out > 0: each record also has `held_out`, that many activating and silent contexts for scoring
    explanations (FeatureStream._held_out)."""
    features = [int(f) for f in features]
    bad = [f for f in features if not 0 <= f < sae.d_sae]
    if bad:
        raise UserError(f"feature ids {bad} are outside the SAE's 0..{sae.d_sae - 1}: fix interpret.extra_features")
    hook = hook or sae.hook_name(lm)
    sae = sae.to(lm.device)
    token_ids = np.asarray(token_ids, dtype=np.int64)
    index = torch.tensor(features, dtype=torch.long, device=lm.device)
    stream = FeatureStream(len(features), top_n=top_n, window=tuple(window), reservoir=reservoir, seed=seed,
                           held_out=held_out)
    for batch in lm.iter_activations(token_ids, hook, batch_sequences, ignore_token_ids, sink_positions,
                                     "interpret" if progress else None):
        stream.update(sae.encode(batch.acts.float())[..., index], batch.keep_BS, batch.start)
    records = stream.records(features, token_ids, lm.tokenizer, bands=bands, per_band=per_band)
    effects = logit_effects(lm.model, lm.tokenizer, sae.W_dec.detach()[index.to(sae.W_dec.device)], k=logit_k)
    for feature, effect in zip(features, effects, strict=True):
        records[feature]["logits"] = effect
    return records
