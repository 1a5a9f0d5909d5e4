"""The vLLM side of steering, free of any vLLM import so it is tested here without an engine.

vLLM's decoder layers return `(hidden_states, residual)`: hidden_states is the layer's MLP output, residual the
stream before it, and the residual stream after the layer is their sum (DIGEST 5.3; the add is fused into the next
layer's norm), so the update is added to `hidden_states`. f_i is read from the sum (site resid_post) or from
hidden_states alone (site mlp_out, the released code's `output[0]`), through the gate buffer resid_gate_1.

`SteeringSlot` keeps the rank-1 update of `reasoning_sae.steering.SteeringVectors` in fixed-size buffers that are
overwritten in place between cells: one compiled graph (and, on a GPU, one set of CUDA graphs) serves every
feature, gamma, mode and site, because the graph never branches on them. Up to `max_features` rows; unused rows
are zero and add nothing.

  x_TD          = hidden_TD + resid_gate_1 * residual_TD                          resid_gate_1: 1 resid_post, 0 mlp_out
  coeff_TK      = targets_K - clamp_K * relu((x_TD - b_dec_D) @ enc_KD.T + enc_bias_K)      clamp_K: 1 clamp, 0 add
  hidden_TD    += mask_T * coeff_TK @ vectors_KD                                       mask_T: positions to steer
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
        for name, shape in (("vectors_KD", (max_features, d_model)), ("enc_KD", (max_features, d_model)),
                            ("enc_bias_K", (max_features,)), ("targets_K", (max_features,)),
                            ("clamp_K", (max_features,)), ("b_dec_D", (d_model,)), ("mask_T", (max_tokens,)),
                            ("resid_gate_1", (1,))):
            self.register_buffer(name, torch.zeros(shape, **kw), persistent=False)
        self.resid_gate_1.fill_(1.0)
        self.positions = "all"
        self.active = False
        self.counts = {"prompt": 0, "generated": 0, "unsteered": 0}
        self.count_tokens = False

    @property
    def max_features(self) -> int:
        return self.targets_K.shape[0]

    def forward(self, hidden_TD: torch.Tensor, residual_TD: torch.Tensor | None) -> torch.Tensor:
        """`hidden_TD` with the update added, f_i read from resid_post = hidden + residual or, for site mlp_out,
        from hidden (the MLP output) alone (branch-free, for compilation)."""
        x_TD = hidden_TD if residual_TD is None else hidden_TD + self.resid_gate_1 * residual_TD
        coeff_TK = self.targets_K - self.clamp_K * torch.relu((x_TD - self.b_dec_D) @ self.enc_KD.T + self.enc_bias_K)
        return hidden_TD + (coeff_TK @ self.vectors_KD) * self.mask_T[: hidden_TD.shape[0], None]

    @torch.no_grad()
    def load(self, vectors: SteeringVectors | None, positions: str = "all") -> None:
        """Overwrite the buffers in place with `vectors` (None: no steering)."""
        if positions not in POSITIONS:
            raise UserError(f"unknown steering positions {positions!r}: use one of {POSITIONS}")
        for buffer in (self.vectors_KD, self.enc_KD, self.enc_bias_K, self.targets_K, self.clamp_K, self.b_dec_D):
            buffer.zero_()
        self.resid_gate_1.fill_(0.0 if vectors is not None and vectors.site == "mlp_out" else 1.0)
        self.active, self.positions = vectors is not None, positions
        self.counts = dict.fromkeys(self.counts, 0)
        if vectors is None:
            return
        k = vectors.targets_K.shape[0]
        if k > self.max_features:
            raise UserError(f"{k} features steered at once, but the vLLM engine holds at most {self.max_features}: "
                            f"steer fewer, or build the engine with max_features={k}")
        for buffer, value in ((self.vectors_KD, vectors.vectors_KD), (self.enc_KD, vectors.enc_KD),
                              (self.enc_bias_K, vectors.enc_bias_K), (self.targets_K, vectors.targets_K)):
            buffer[:k].copy_(value)
        self.clamp_K[:k] = float(vectors.mode == "clamp")
        if vectors.b_dec_D is not None:
            self.b_dec_D.copy_(vectors.b_dec_D)

    @torch.no_grad()
    def prepare(self, positions_T: torch.Tensor, prompt_lengths_T: torch.Tensor | None) -> None:
        """Set the mask for the next forward over `positions_T` (absolute position of each flattened token);
        `prompt_lengths_T` is each token's sequence's prompt length (None: unknown, e.g. a warm-up pass)."""
        n = positions_T.shape[0]
        if not self.active:
            self.mask_T[:n] = 0.0
            return
        if prompt_lengths_T is None:
            self.mask_T[:n] = float(self.positions == "all")
            return
        real = prompt_lengths_T.shape[0]
        in_prompt_T = positions_T[:real] < prompt_lengths_T.to(positions_T.device)
        keep_T = {"all": torch.ones_like(in_prompt_T), "prompt": in_prompt_T, "generated": ~in_prompt_T}[self.positions]
        self.mask_T[:real] = keep_T.to(self.mask_T.dtype)
        self.mask_T[real:n] = 0.0  # padding rows (CUDA graphs)
        if self.count_tokens:  # a device sync per step: diagnostics only
            steered_prompt = int((keep_T & in_prompt_T).sum())
            steered = int(keep_T.sum())
            self.counts["prompt"] += steered_prompt
            self.counts["generated"] += steered - steered_prompt
            self.counts["unsteered"] += real - steered


def token_prompt_lengths(query_start_loc: np.ndarray, prompt_lengths_R: np.ndarray) -> torch.Tensor:
    """Each flattened token's prompt length, from the batch layout (request r owns tokens
    query_start_loc[r]:query_start_loc[r + 1]) and the requests' prompt lengths in batch order."""
    counts_R = np.diff(query_start_loc)
    return torch.from_numpy(np.repeat(prompt_lengths_R[: len(counts_R)].astype(np.int64), counts_R))


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
