"""Activations to layer L with the early-stopping hook vs a full forward with `output_hidden_states`.

The ideal speed-up is the FLOP ratio: the full pass runs every layer and the LM head, ours only layers 0..L."""

import torch

from reasoning_sae.bench.timing import median_seconds
from reasoning_sae.models import LanguageModel


def forward_flops_per_token(cfg, layers: int, seq_len: int, lm_head: bool) -> float:
    """Matmul FLOPs per token for `layers` decoder layers (+ the LM head), attention over seq_len/2 on average."""
    d, kv = cfg.hidden_size, cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    weights = 2 * d * d + 2 * d * kv + 3 * d * cfg.intermediate_size
    attention = 2 * 2 * (seq_len / 2) * d
    return layers * (2 * weights + attention) + (2 * d * cfg.vocab_size if lm_head else 0)


def tokens_per_s(fns: dict, n_tokens: int, repeats: int) -> dict[str, float]:
    """Median tokens/s of each function; the functions take turns so that load drifting on the machine
    affects all of them alike."""
    return {name: n_tokens / seconds for name, seconds in median_seconds(fns, repeats).items()}


@torch.inference_mode()
def run(lm: LanguageModel, layer: int = 18, batch: int = 8, seq_len: int = 256, repeats: int = 5) -> dict:
    ids_BS = torch.randint(100, lm.tokenizer.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    speed = tokens_per_s({
        "ours": lambda: lm.activations(ids_BS, hook=f"blocks.{layer}.hook_resid_post"),
        "full": lambda: lm.model(ids_BS, output_hidden_states=True),
    }, batch * seq_len, repeats)
    ours, full = speed["ours"], speed["full"]
    cfg = lm.model.config
    ideal = forward_flops_per_token(cfg, lm.n_layers, seq_len, True) / forward_flops_per_token(
        cfg, layer + 1, seq_len, False)
    return {"layer": layer, "batch": batch, "seq_len": seq_len, "ours_tok_s": ours, "full_tok_s": full,
            "speedup": ours / full, "ideal_speedup": ideal}


def report(result: dict) -> str:
    r = result
    return "\n".join([
        f"activations to blocks.{r['layer']}.hook_resid_post, batch {r['batch']} x {r['seq_len']} tokens, fp32:",
        f"  early-stopped hook (ours)            {r['ours_tok_s']:10.0f} tok/s",
        f"  full forward, output_hidden_states   {r['full_tok_s']:10.0f} tok/s   (baseline)",
        f"  speed-up ours / baseline             {r['speedup']:10.2f} x",
        f"  ideal (FLOP ratio: {r['layer'] + 1} of the layers, no LM head) {r['ideal_speedup']:6.2f} x"
        f"   -> ours reaches {r['speedup'] / r['ideal_speedup']:.0%} of it",
    ])
