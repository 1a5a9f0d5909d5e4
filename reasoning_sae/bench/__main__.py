"""`make bench`: every benchmark in one run, each as a ratio against its named baseline."""

import torch

from reasoning_sae.bench import activations, sae_step, score, steering
from reasoning_sae.models import load_lm


def bench_sae(lm):
    """The demo SAE (9,216 latents, the paper's 16x) when `make reproduce` has trained it, else a random one that size."""
    from pathlib import Path

    from reasoning_sae.sae import SAEConfig, SparseAutoencoder, initialize

    demo = Path("artifacts/demo/train/sae")
    if demo.is_dir():
        return "demo SAE", SparseAutoencoder.load(demo)
    print("(no demo SAE at artifacts/demo/train/sae: benching a random SAE of its size; make reproduce trains it)")
    cfg = SAEConfig(d_in=lm.d_model, d_sae=16 * lm.d_model, metadata={"hook_name": "blocks.18.hook_resid_post"})
    return "random SAE, 16x expansion", initialize(SparseAutoencoder(cfg), "fixed")


def main() -> None:
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    lm = load_lm("smollm2-135m-instruct", device="cpu")
    print(activations.report(activations.run(lm)))
    print()
    label, sae = bench_sae(lm)
    print(f"[{label}, d_sae {sae.d_sae}]", score.report(score.run(lm, sae)))
    print(f"\n[{label}]", steering.report(steering.run(lm, sae)))
    del lm
    print()
    print(sae_step.report(sae_step.run()))


if __name__ == "__main__":
    main()
