"""One training step of each newer SAE architecture (jumprelu, batchtopk, matryoshka_batchtopk) against SAELens'
training class for it and against the 5-GEMM floor of the same shapes (bench/sae_step.py): zero_grad + loss +
backward + Adam step, the same weights, data and optimizer for both. Issue 16's target is ours >= 1.5 x SAELens;
these architectures still train through plain autograd (no hand-written backward yet), so this is where they stand."""

import statistics

import torch

from reasoning_sae.bench.sae_step import SAE_LENS_TARGET, _adam, _ours, _step, _target, gemm_floor
from reasoning_sae.bench.timing import round_seconds
from reasoning_sae.sae import SAEConfig

ARCHITECTURES = ("jumprelu", "batchtopk", "matryoshka_batchtopk")
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


def _widths(d_sae: int) -> list[int]:
    return [d_sae // 16, d_sae // 4, d_sae]


def _pair(architecture: str, d_in: int, d_sae: int, k: int, seed: int):
    """Our SAE and SAELens' training SAE of `architecture` with the same weights, and SAELens' step coefficients."""
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
    from sae_lens.saes.matryoshka_batchtopk_sae import (MatryoshkaBatchTopKTrainingSAE,
                                                        MatryoshkaBatchTopKTrainingSAEConfig)

    shared = {"d_in": d_in, "d_sae": d_sae, "apply_b_dec_to_input": False}
    if architecture == "jumprelu":
        ours = _ours(SAEConfig(d_in, d_sae, architecture="jumprelu"), seed)
        with torch.no_grad():
            ours.threshold.fill_(0.01)  # SAELens' jumprelu_init_threshold
        theirs = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**shared))
        names, coefficients = (*PARAMS, "threshold"), {"l0": 1.0}
    else:
        widths = _widths(d_sae) if architecture == "matryoshka_batchtopk" else None
        ours = _ours(SAEConfig(d_in, d_sae, architecture=architecture, k=k, matryoshka_widths=widths), seed)
        if widths:
            theirs = MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(
                **shared, k=k, matryoshka_widths=widths, rescale_acts_by_decoder_norm=False))
        else:
            theirs = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**shared, k=k, rescale_acts_by_decoder_norm=False))
        names, coefficients = PARAMS, {}
    theirs.load_state_dict({n: getattr(ours, n).detach().clone() for n in names}, strict=False)
    return ours, theirs, coefficients


def run(d_in: int = 576, d_sae: int = 9216, batch: int = 4096, k: int = 32, repeats: int = 5, seed: int = 0) -> dict:
    """Median step times (ms) over `repeats` interleaved rounds after a warm-up round, per architecture."""
    from sae_lens.saes.sae import TrainStepInput

    g = torch.Generator().manual_seed(seed)
    x_BD = torch.randn(batch, d_in, generator=g)
    fns = {"floor": gemm_floor(batch, d_in, d_sae, g)}
    for arch in ARCHITECTURES:
        ours, theirs, coefficients = _pair(arch, d_in, d_sae, k, seed)
        step_input = TrainStepInput(sae_in=x_BD, coefficients=coefficients, dead_neuron_mask=None,
                                    n_training_steps=0, is_logging_step=False)
        fns[arch] = _step(_adam(ours.parameters(), True), lambda ours=ours: ours.training_loss(x_BD).loss)
        fns[f"{arch}/sae_lens"] = _step(_adam(theirs.parameters(), True),
                                        lambda theirs=theirs, s=step_input: theirs.training_forward_pass(s).loss)
    ms = {name: 1e3 * statistics.median(t) for name, t in round_seconds(fns, repeats).items()}
    result = {"d_in": d_in, "d_sae": d_sae, "batch": batch, "k": k, "repeats": repeats,
              "threads": torch.get_num_threads(), "floor_ms": ms["floor"]}
    for arch in ARCHITECTURES:
        result[f"{arch}_ms"], result[f"{arch}_sae_lens_ms"] = ms[arch], ms[f"{arch}/sae_lens"]
        result[f"{arch}_over_floor"] = ms[arch] / ms["floor"]
        result[f"{arch}_speedup_vs_sae_lens"] = ms[f"{arch}/sae_lens"] / ms[arch]
    return result


def report(result: dict) -> str:
    r = result
    lines = [f"SAE training step per architecture (zero_grad + loss + backward + fused Adam) vs SAELens' training class:"
             f" batch {r['batch']}, d_in {r['d_in']} -> d_sae {r['d_sae']}, k {r['k']} (batchtopk, matryoshka widths "
             f"{_widths(r['d_sae'])}), fp32, {r['threads']} threads, median of {r['repeats']} interleaved rounds",
             "  {:<42}{:>8.1f} ms".format("5-GEMM floor (the step's matmuls alone)", r["floor_ms"])]
    for arch in ARCHITECTURES:
        speedup = r[f"{arch}_speedup_vs_sae_lens"]
        lines.append(f"  {arch + ', ours':<42}{r[f'{arch}_ms']:8.1f} ms   {r[f'{arch}_over_floor']:5.2f} x floor   "
                     f"SAELens {r[f'{arch}_sae_lens_ms']:.1f} ms: ours {speedup:.2f} x faster  "
                     + _target(speedup >= SAE_LENS_TARGET, f">= {SAE_LENS_TARGET:.2f} x"))
    return "\n".join(lines)
