"""`make bench`: every benchmark in one run, each as a ratio against its named baseline."""

import torch

from reasoning_sae.bench import activations, sae_step
from reasoning_sae.models import load_lm


def main() -> None:
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    lm = load_lm("smollm2-135m-instruct", device="cpu")
    print(activations.report(activations.run(lm)))
    del lm
    print()
    print(sae_step.report(sae_step.run()))


if __name__ == "__main__":
    main()
