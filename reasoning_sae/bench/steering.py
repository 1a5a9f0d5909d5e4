"""Greedy generation with and without steering: our rank-1 hook vs the released code's full-SAE hook.

The released hook (lm_eval/sae_utils.py) encodes the whole activation with the SAE, sets the feature, decodes
and adds the SAE error back: two [tokens, d_sae] products per step where ours needs one column and one row."""

import torch

from reasoning_sae.bench.timing import median_seconds
from reasoning_sae.steering import steer
from reasoning_sae.train.quality import replace_resid_post

PROMPTS = ["What is 17 times 23?", "Name three prime numbers above 50.", "Why is the sky blue?",
           "Write a haiku about rain.", "How many legs does a spider have?", "Explain what a mutex is.",
           "Convert 3 km to miles.", "Who wrote Hamlet?"]


def full_sae_hook(lm, sae, feature: int, value: float):
    """The released code's intervention: f = encode(x); err = x - decode(f); f[i] = value; x' = decode(f) + err."""

    def intervene(hidden):
        feats = sae.encode(hidden)
        error = hidden - sae.decode(feats)
        feats[..., feature] = value
        return sae.decode(feats) + error

    return replace_resid_post(lm, lm.hook_point(sae.hook_name(lm)).layer, intervene)


@torch.inference_mode()
def run(lm, sae, feature: int = 0, new_tokens: int = 128, repeats: int = 3) -> dict:
    f_max = 4.0

    def generate():
        lm.generate(PROMPTS, max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    def ours():
        with steer(lm, sae, feature=feature, gamma=2.0, mode="clamp", f_max=f_max):
            generate()

    def released():
        with full_sae_hook(lm, sae, feature, 2.0 * f_max):
            generate()

    seconds = median_seconds({"unsteered": generate, "ours": ours, "released": released}, repeats)
    tokens = len(PROMPTS) * new_tokens
    return {name: tokens / s for name, s in seconds.items()} | {"d_sae": sae.d_sae, "tokens": tokens}


def report(r: dict) -> str:
    ratio = r["ours"] / r["unsteered"]
    return "\n".join([
        f"greedy generation, batch {len(PROMPTS)} x {r['tokens'] // len(PROMPTS)} new tokens, d_sae {r['d_sae']}:",
        f"  unsteered (baseline)              {r['unsteered']:8.1f} tok/s",
        f"  steered, our rank-1 hook          {r['ours']:8.1f} tok/s   {ratio:.3f}x unsteered"
        f"   (target >= 0.97x: {'PASS' if ratio >= 0.97 else 'MISS'})",
        f"  steered, full-SAE hook (released) {r['released']:8.1f} tok/s   {r['released'] / r['unsteered']:.3f}x unsteered",
    ])
