"""Greedy generation on vLLM: the steered engine against a plain one, compiled against eager, vLLM against HF.

One batch throughout: the first problems of the demo benchmark (`reasoning_demo`) in the model's chat template,
tokenized once and given to every engine as the same token ids, `new_tokens` greedy tokens each with EOS ignored.
Two engines are alive at a time (memory): first the plain and the steered (compiled) engine, then the steered and
the eager one, each pair timed in interleaved rounds with the HF engine in the second, so that load drifting on
the machine affects the compared runs alike. vLLM's CPU build runs its model on one core (it keeps the other for
its front end); the HF engine uses the bench's torch threads."""

import os

import torch

from reasoning_sae.bench.timing import median_seconds
from reasoning_sae.steering import steer, steering_vectors

ENGINE = {"dtype": "float32", "max_model_len": 2048, "seed": 0}
GAMMA, F_MAX = 2.0, 4.0


def demo_prompts(lm, n: int = 8) -> list[list[int]]:
    """Token ids of the demo benchmark's first `n` prompts, as the evaluate stage renders them (chat template)."""
    from reasoning_sae.evaluate.benchmarks import MATH_PROMPT, load_benchmark

    rows = load_benchmark("reasoning_demo")["test"].select(range(n))
    texts = [lm.chat_prompt(MATH_PROMPT.format(problem=row["problem"])) for row in rows]
    return [lm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def _hf_generate(lm, prompts, sae, feature: int, new_tokens: int):
    """The HF engine's steered generation of the same token ids (a left-padded batch, as lm-eval's HF model)."""
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.tokenizer.eos_token_id
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=lm.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=lm.device)

    @torch.inference_mode()
    def generate():
        with steer(lm, sae, feature=feature, gamma=GAMMA, mode="add", f_max=F_MAX):
            out = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                                    min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
        assert out.shape[1] == width + new_tokens

    return generate


def run(lm, sae, feature: int = 0, new_tokens: int = 128, repeats: int = 3, n_prompts: int = 8,
        model: str = "smollm2-135m-instruct") -> dict:
    """tok/s of each engine on one batch; `lm` is the HF engine's model (the same `model`)."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # before vLLM is imported; its workers inherit it
    from reasoning_sae.lm_eval import vllm_engine
    from reasoning_sae.lm_eval.vllm_worker import vectors_payload
    from reasoning_sae.models.loading import model_path

    vllm = vllm_engine.require_vllm()
    prompts = demo_prompts(lm, n_prompts)
    layer = lm.hook_point(sae.hook_name(lm)).layer
    payload = vectors_payload(steering_vectors(sae, feature, GAMMA, "add", F_MAX), "all")
    params = vllm.SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True)
    batch = [vllm.TokensPrompt(prompt_token_ids=ids) for ids in prompts]
    model_dir = model_path(model)

    def start(steer_layer, compiled=True):
        llm = vllm_engine.engine(**vllm_engine.engine_args(model_dir, steer_layer, 8, compiled, **ENGINE))
        if steer_layer is not None:
            llm.collective_rpc("steering_set", args=(payload, False))

        def generate():
            outputs = llm.generate(batch, params, use_tqdm=False)
            assert all(len(o.outputs[0].token_ids) == new_tokens for o in outputs)

        return llm, generate

    try:
        _, plain = start(None)
        steered, compiled = start(layer)

        def compiled_idle():  # the steered engine with nothing loaded: the slot's own cost
            steered.collective_rpc("steering_set", args=(None,))
            compiled()
            steered.collective_rpc("steering_set", args=(payload, False))

        first = median_seconds({"plain": plain, "compiled": compiled, "compiled_idle": compiled_idle}, repeats)
        vllm_engine.shutdown()
        _, compiled = start(layer)
        _, eager = start(layer, compiled=False)
        second = median_seconds({"compiled": compiled, "eager": eager,
                                 "hf": _hf_generate(lm, prompts, sae, feature, new_tokens)}, repeats)
    finally:
        vllm_engine.shutdown()
    tokens = len(prompts) * new_tokens
    speed = {name: tokens / s for name, s in first.items()} | {f"{name}_2": tokens / s for name, s in second.items()}
    return speed | {"tokens": tokens, "prompts": len(prompts), "prompt_tokens": sum(map(len, prompts)),
                    "vllm": f"{vllm_engine.vllm_distribution()} {vllm.__version__}",
                    "hf_threads": torch.get_num_threads()}


def _verdict(ratio: float, target: float) -> str:
    return f"(target >= {target:.2f}x: {'PASS' if ratio >= target else 'MISS'})"


def report(r: dict) -> str:
    steered_over_plain = r["compiled"] / r["plain"]
    return "\n".join([
        f"vLLM ({r['vllm']}), greedy generation, batch {r['prompts']} demo-benchmark prompts "
        f"({r['prompt_tokens']} prompt tokens) x {r['tokens'] // r['prompts']} new tokens, EOS ignored:",
        f"  plain engine, unsteered (baseline)        {r['plain']:8.1f} tok/s",
        f"  steered class, compiled, steering         {r['compiled']:8.1f} tok/s   {steered_over_plain:.3f}x plain"
        f"   {_verdict(steered_over_plain, 0.97)}",
        f"  steered class, compiled, nothing loaded   {r['compiled_idle']:8.1f} tok/s   "
        f"{r['compiled_idle'] / r['plain']:.3f}x plain",
        "  then, in rounds of their own:",
        f"  steered class, compiled, steering         {r['compiled_2']:8.1f} tok/s   (baseline)",
        f"  eager hook (compiled=false), steering     {r['eager_2']:8.1f} tok/s   "
        f"compiled is {r['compiled_2'] / r['eager_2']:.2f}x eager",
        f"  HF engine, steered (our rank-1 hook)      {r['hf_2']:8.1f} tok/s   "
        f"vLLM compiled is {r['compiled_2'] / r['hf_2']:.2f}x HF ({r['hf_threads']} torch threads)",
    ])
