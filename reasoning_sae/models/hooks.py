"""TransformerLens-style hook names mapped onto HF decoder layers.

`blocks.L.hook_resid_post` is the residual stream after decoder layer L (HF `hidden_states[L + 1]`);
`blocks.L.hook_resid_pre` is the stream entering layer L (HF `hidden_states[L]`).
"""

import re
from typing import NamedTuple

from reasoning_sae.errors import UserError

HOOK_KINDS = ("hook_resid_pre", "hook_resid_post")
_HOOK_RE = re.compile(r"^blocks\.(\d+)\.(\w+)$")


class HookPoint(NamedTuple):
    name: str
    """The hook name as given, e.g. `blocks.18.hook_resid_post`."""
    layer: int
    """0-indexed decoder layer the hook belongs to."""
    kind: str
    """One of HOOK_KINDS."""

    @property
    def last_layer_needed(self) -> int:
        """Deepest decoder layer that must run to produce this activation (-1: embeddings only)."""
        return self.layer if self.kind == "hook_resid_post" else self.layer - 1


def parse_hook(name: str, n_layers: int) -> HookPoint:
    match = _HOOK_RE.match(name)
    if match is None or match.group(2) not in HOOK_KINDS:
        kinds = ", ".join(f"blocks.L.{k}" for k in HOOK_KINDS)
        raise UserError(f"unknown hook name {name!r}: use one of {kinds} with L a layer index")
    layer = int(match.group(1))
    if not 0 <= layer < n_layers:
        raise UserError(
            f"layer {layer} in hook {name!r} is out of range: the model has {n_layers} layers (0-{n_layers - 1})"
        )
    return HookPoint(name, layer, match.group(2))


def resid_post(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"
