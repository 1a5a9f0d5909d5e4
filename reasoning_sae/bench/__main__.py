"""`make bench`: every benchmark in one run, each as a ratio against its named baseline."""

import torch

from reasoning_sae.bench import activations, sae_step, score, steering
from reasoning_sae.models import load_lm


def score_saes(lm):
    """The demo SAE when `make reproduce` has trained it, and a random one of the paper's 16x expansion."""
    from pathlib import Path

    from reasoning_sae.sae import SAEConfig, SparseAutoencoder, initialize

    demo = Path("artifacts/demo/train/sae")
    if demo.is_dir():
        yield "demo SAE", SparseAutoencoder.load(demo)
    else:
        print("(no demo SAE at artifacts/demo/train/sae: run make reproduce to bench it)")
    cfg = SAEConfig(d_in=lm.d_model, d_sae=16 * lm.d_model, metadata={"hook_name": "blocks.18.hook_resid_post"})
    yield "random SAE, 16x expansion", initialize(SparseAutoencoder(cfg), "fixed")


def main() -> None:
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    lm = load_lm("smollm2-135m-instruct", device="cpu")
    print(activations.report(activations.run(lm)))
    print()
    for label, sae in score_saes(lm):
        print(f"[{label}]", score.report(score.run(lm, sae)))
    print(f"\n[{label}]", steering.report(steering.run(lm, sae)))  # the largest SAE: the hooks differ most
    del lm
    print()
    print(sae_step.report(sae_step.run()))


if __name__ == "__main__":
    main()
