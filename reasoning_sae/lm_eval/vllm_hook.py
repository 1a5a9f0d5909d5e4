"""The vLLM side of steering, free of any vLLM import so it is tested here without an engine.

vLLM's decoder layers return `(hidden_states, residual)`: hidden_states is the layer's MLP output, residual the
stream before it, and the residual stream after the layer is their sum (vLLM's llama.py; the add is fused into the next
layer's norm), so the update is added to `hidden_states`. f_i is read from the sum (site resid_post) or from
hidden_states alone (site mlp_out, the released code's `output[0]`), through the gate buffer resid_gate_1.

`SteeringSlot` keeps the rank-1 update of `reasoning_sae.steering.SteeringVectors` in fixed-size buffers that are
overwritten in place between cells: one compiled graph (and, on a GPU, one set of CUDA graphs) serves every
feature, gamma, mode and site, because the graph never branches on them. Up to `max_features` rows; unused rows
are zero and add nothing. Per forward, over the batch's N tokens (every request's, flattened as vLLM runs them):

  x_ND          = hidden_ND + resid_gate_1 * residual_ND                          resid_gate_1: 1 resid_post, 0 mlp_out
  pre_NG        = (x_ND - b_dec_D) @ enc_GD.T + enc_bias_G
  coeff_NG      = targets_G - clamp_G * relu(pre_NG) * [pre_NG > threshold_G]          clamp_G: 1 clamp, 0 add
                                                        threshold_G: each latent's JumpReLU threshold, 0 for standard
  hidden_ND    += mask_N * coeff_NG @ vectors_GD                                       mask_N: positions to steer
"""

import numpy as np
import torch

from reasoning_sae.errors import UserError
from reasoning_sae.steering import POSITIONS, SteeringVectors

MAX_FEATURES = 8


class SteeringSlot(torch.nn.Module):
    """Steering buffers of one decoder layer, plus the per-token mask the engine refreshes before every forward."""

    def __init__(self, d_model: int, max_tokens: int, max_features: int = MAX_FEATURES, dtype=None, device=None):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        for name, shape in (("vectors_GD", (max_features, d_model)), ("enc_GD", (max_features, d_model)),
                            ("enc_bias_G", (max_features,)), ("targets_G", (max_features,)),
                            ("clamp_G", (max_features,)), ("threshold_G", (max_features,)), ("b_dec_D", (d_model,)),
                            ("mask_N", (max_tokens,)),
                            ("resid_gate_1", (1,))):
            self.register_buffer(name, torch.zeros(shape, **kw), persistent=False)
        self.resid_gate_1.fill_(1.0)
        self.positions = "all"
        self.active = False
        self.counts = {"prompt": 0, "generated": 0, "unsteered": 0}
        self.count_tokens = False

    @property
    def max_features(self) -> int:
        return self.targets_G.shape[0]

    def forward(self, hidden_ND: torch.Tensor, residual_ND: torch.Tensor | None) -> torch.Tensor:
        """`hidden_ND` with the update added, f_i read from resid_post = hidden + residual or, for site mlp_out,
        from hidden (the MLP output) alone (branch-free, for compilation)."""
        x_ND = hidden_ND if residual_ND is None else hidden_ND + self.resid_gate_1 * residual_ND
        pre_NG = (x_ND - self.b_dec_D) @ self.enc_GD.T + self.enc_bias_G
        coeff_NG = self.targets_G - self.clamp_G * torch.relu(pre_NG) * (pre_NG > self.threshold_G).to(pre_NG.dtype)
        return hidden_ND + (coeff_NG @ self.vectors_GD) * self.mask_N[: hidden_ND.shape[0], None]

    @torch.no_grad()
    def load(self, vectors: SteeringVectors | None, positions: str = "all") -> None:
        """Overwrite the buffers in place with `vectors` (None: no steering)."""
        if positions not in POSITIONS:
            raise UserError(f"unknown steering positions {positions!r}: use one of {POSITIONS}")
        for buffer in (self.vectors_GD, self.enc_GD, self.enc_bias_G, self.targets_G, self.clamp_G, self.threshold_G,
                       self.b_dec_D):
            buffer.zero_()
        self.resid_gate_1.fill_(0.0 if vectors is not None and vectors.site == "mlp_out" else 1.0)
        self.active, self.positions = vectors is not None, positions
        self.counts = dict.fromkeys(self.counts, 0)
        if vectors is None:
            return
        g = vectors.targets_G.shape[0]
        if g > self.max_features:
            raise UserError(f"{g} features steered at once, but the vLLM engine holds at most {self.max_features}: "
                            f"steer fewer, or build the engine with max_features={g}")
        for buffer, value in ((self.vectors_GD, vectors.vectors_GD), (self.enc_GD, vectors.enc_GD),
                              (self.enc_bias_G, vectors.enc_bias_G), (self.targets_G, vectors.targets_G),
                              (self.threshold_G, vectors.threshold_G)):
            buffer[:g].copy_(value)
        self.clamp_G[:g] = float(vectors.mode == "clamp")
        if vectors.b_dec_D is not None:
            self.b_dec_D.copy_(vectors.b_dec_D)

    @torch.no_grad()
    def prepare(self, positions_N: torch.Tensor, prompt_lengths_N: torch.Tensor | None) -> None:
        """Set the mask for the next forward over `positions_N` (absolute position of each flattened token);
        `prompt_lengths_N` is each token's sequence's prompt length (None: unknown, e.g. a warm-up pass)."""
        n = positions_N.shape[0]
        if not self.active:
            self.mask_N[:n] = 0.0
            return
        if prompt_lengths_N is None:
            self.mask_N[:n] = float(self.positions == "all")
            return
        real = prompt_lengths_N.shape[0]
        in_prompt_N = positions_N[:real] < prompt_lengths_N.to(positions_N.device)
        keep_N = {"all": torch.ones_like(in_prompt_N), "prompt": in_prompt_N, "generated": ~in_prompt_N}[self.positions]
        self.mask_N[:real] = keep_N.to(self.mask_N.dtype)
        self.mask_N[real:n] = 0.0  # padding rows (CUDA graphs)
        if self.count_tokens:  # a device sync per step: diagnostics only
            steered_prompt = int((keep_N & in_prompt_N).sum())
            steered = int(keep_N.sum())
            self.counts["prompt"] += steered_prompt
            self.counts["generated"] += steered - steered_prompt
            self.counts["unsteered"] += real - steered


def token_prompt_lengths(query_start_loc: np.ndarray, prompt_lengths_Q: np.ndarray) -> torch.Tensor:
    """Each flattened token's prompt length, from the batch layout (request r owns tokens
    query_start_loc[r]:query_start_loc[r + 1]) and the requests' prompt lengths in batch order."""
    counts_Q = np.diff(query_start_loc)
    return torch.from_numpy(np.repeat(prompt_lengths_Q[: len(counts_Q)].astype(np.int64), counts_Q))


class SlotHook:
    """Eager fallback for models without a steered class: a forward hook on the decoder layer that applies the
    slot (the mask is prepared by the hook itself, so this runs only with compilation off)."""

    def __init__(self, slot: SteeringSlot, prompt_lengths):
        self.slot, self.prompt_lengths = slot, prompt_lengths

    def __call__(self, _module, args, output):
        hidden, residual = output
        positions = args[0]
        self.slot.prepare(positions, self.prompt_lengths(positions.shape[0]))
        return self.slot(hidden, residual), residual
