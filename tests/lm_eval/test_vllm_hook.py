"""The vLLM steering slot and word-ban processor without an engine: the same update as the HF hook, in place."""

import importlib.util

import numpy as np
import pytest
import torch

from reasoning_sae import UserError
from reasoning_sae.lm_eval.vllm_hook import SlotHook, SteeringSlot, token_prompt_lengths
from reasoning_sae.steering import SteeringHook, steering_vectors
from tests.helpers import random_sae


@pytest.mark.parametrize("mode, apply_b_dec", [("add", False), ("clamp", False), ("clamp", True)])
def test_slot_steers_the_sum_of_hidden_states_and_residual_like_the_hf_hook(mode, apply_b_dec):
    sae = random_sae(d_in=24, d_sae=40, apply_b_dec=apply_b_dec)
    vectors = steering_vectors(sae, [3, 9], gamma=[2.0, -1.0], mode=mode)
    hidden, residual = torch.randn(11, 24), torch.randn(11, 24)  # vLLM flattens tokens: [num_tokens, d]
    slot = SteeringSlot(24, max_tokens=16, max_features=4)
    slot.load(vectors)
    slot.prepare(torch.arange(11), None)
    expected = SteeringHook(vectors, "all")(None, (), {}, (hidden + residual)[None])[0]
    torch.testing.assert_close(slot(hidden, residual) + residual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_slot_at_mlp_out_reads_hidden_states_alone_and_switches_site_in_place(apply_b_dec):
    """site mlp_out: f_i from hidden_states (vLLM's output[0], the MLP output), as the released code; the update
    still lands on hidden_states (so on resid_post). Switching site rewrites a buffer, never the graph."""
    from reasoning_sae.lm_eval.vllm_worker import vectors_payload

    sae = random_sae(d_in=24, d_sae=40, apply_b_dec=apply_b_dec)
    hidden, residual = torch.randn(11, 24) * 3, torch.randn(11, 24) * 3
    slot = SteeringSlot(24, max_tokens=16, max_features=4)
    buffers = {name: b.data_ptr() for name, b in slot.named_buffers()}
    got = {}
    for site in ("mlp_out", "resid_post", "mlp_out"):
        vectors = steering_vectors(sae, [3, 9], gamma=[2.0, -1.0], mode="clamp", site=site)
        assert vectors_payload(vectors, "all")["site"] == site
        slot.load(vectors)
        slot.prepare(torch.arange(11), None)
        got[site] = slot(hidden, residual)
        source = hidden if site == "mlp_out" else hidden + residual
        torch.testing.assert_close(got[site], hidden + vectors.update(source), atol=1e-5, rtol=1e-5)
        eager, _ = SlotHook(slot, lambda n: None)(None, (torch.arange(11), hidden, None), (hidden, residual))
        torch.testing.assert_close(eager, got[site], atol=0, rtol=0)
    assert (got["mlp_out"] - got["resid_post"]).abs().max() > 0.1
    assert buffers == {name: b.data_ptr() for name, b in slot.named_buffers()}
    outs = []
    for site in ("mlp_out", "resid_post"):
        slot.load(steering_vectors(sae, [3, 9], gamma=[2.0, -1.0], mode="add", site=site))
        slot.prepare(torch.arange(11), None)
        outs.append(slot(hidden, residual))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)  # add never reads f_i
    slot.load(None)
    assert slot.resid_gate_1.item() == 1.0


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_slot_clamps_a_jumprelu_sae_at_its_thresholds_like_the_hf_hook(apply_b_dec):
    """The thresholds travel in the worker payload and a buffer: a latent below its threshold reads 0 in both engines;
    then a standard SAE in the same slot reads plain ReLU again (its thresholds overwrite them with 0)."""
    from reasoning_sae.lm_eval.vllm_worker import vectors_payload
    from reasoning_sae.sae import SAEConfig, SparseAutoencoder

    base = random_sae(d_in=24, d_sae=40, apply_b_dec=apply_b_dec)
    sae = SparseAutoencoder(SAEConfig(24, 40, architecture="jumprelu", apply_b_dec_to_input=apply_b_dec))
    sae.load_state_dict(base.state_dict(), strict=False)
    hidden, residual = torch.randn(11, 24) * 3, torch.randn(11, 24) * 3
    with torch.no_grad():
        pre_NF = sae.encode_pre(hidden + residual)
        sae.threshold.copy_(pre_NF.relu().mean(0))  # some positive latents below it
    features = (pre_NF > 0).sum(0).topk(3).indices.tolist()  # often positive
    slot = SteeringSlot(24, max_tokens=16, max_features=4)
    outs = {}
    for name, steered in (("jumprelu", sae), ("standard", base)):
        vectors = steering_vectors(steered, features, gamma=[2.0, -1.0, 1.5], mode="clamp", f_max=[1.0, 2.0, 3.0])
        payload = vectors_payload(vectors, "all")
        assert payload["tensors"]["threshold_G"] == pytest.approx(vectors.threshold_G.tolist())
        slot.load(vectors)
        slot.prepare(torch.arange(11), None)
        outs[name] = slot(hidden, residual)
        expected = SteeringHook(vectors, "all")(None, (), {}, (hidden + residual)[None])[0]
        torch.testing.assert_close(outs[name] + residual, expected, atol=1e-5, rtol=1e-5)
    assert slot.threshold_G.abs().sum() == 0
    assert (outs["jumprelu"] - outs["standard"]).abs().max() > 0.1


def test_slot_is_rewritten_in_place_and_empty_adds_nothing():
    sae = random_sae(d_in=24, d_sae=40)
    slot = SteeringSlot(24, max_tokens=8, max_features=2)
    buffers = {name: b.data_ptr() for name, b in slot.named_buffers()}
    hidden, residual = torch.randn(5, 24), torch.randn(5, 24)
    slot.load(steering_vectors(sae, [1, 2], gamma=1.0, f_max=[1.0, 2.0]))
    slot.prepare(torch.arange(5), None)
    assert not torch.equal(slot(hidden, residual), hidden)
    slot.load(None)
    slot.prepare(torch.arange(5), None)
    assert torch.equal(slot(hidden, residual), hidden)
    assert buffers == {name: b.data_ptr() for name, b in slot.named_buffers()}  # compiled graphs keep them
    with pytest.raises(UserError, match="at most 2"):
        slot.load(steering_vectors(sae, [1, 2, 3], gamma=1.0, f_max=1.0))


def test_positions_mask_prompt_and_generated_tokens_of_a_flattened_batch():
    """Three requests in one forward: a 3-token prefill chunk, then two decode steps (prompt lengths 3, 2, 4)."""
    query_start_loc = np.array([0, 3, 4, 5])
    lengths = token_prompt_lengths(query_start_loc, np.array([3, 2, 4, 99]))
    assert lengths.tolist() == [3, 3, 3, 2, 4]
    positions = torch.tensor([0, 1, 2, 5, 3])  # request 2's position 3 is still its prompt
    sae = random_sae(d_in=24, d_sae=40)
    slot = SteeringSlot(24, max_tokens=8)
    for kind, expected in (("all", [1, 1, 1, 1, 1]), ("prompt", [1, 1, 1, 0, 1]), ("generated", [0, 0, 0, 1, 0])):
        slot.load(steering_vectors(sae, 4, gamma=1.0, f_max=1.0), kind)
        slot.count_tokens = True
        slot.prepare(torch.cat([positions, torch.tensor([0, 0])]), lengths)  # two padding rows
        assert slot.mask_N[:7].tolist() == [*expected, 0, 0]
        assert slot.counts == {"prompt": sum(expected[i] for i in (0, 1, 2, 4)), "generated": expected[3],
                               "unsteered": 5 - sum(expected)}


def test_slot_hook_is_the_eager_form():
    sae = random_sae(d_in=24, d_sae=40)
    slot = SteeringSlot(24, max_tokens=8)
    slot.load(steering_vectors(sae, 5, gamma=1.0, f_max=2.0))
    hidden, residual = torch.randn(4, 24), torch.zeros(4, 24)
    new, same = SlotHook(slot, lambda n: None)(None, (torch.arange(4), hidden, None), (hidden, residual))
    assert same is residual
    torch.testing.assert_close(new, hidden + 2.0 * sae.W_dec[5])


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")
def test_ban_processor_tracks_rows_and_frees_them_after_think_end():
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

    from reasoning_sae.lm_eval.vllm_ban import KEY, WordBanLogitsProcessor

    think_end = 50
    ban = SamplingParams(extra_args={KEY: {"sequences": [[7], [8, 9]], "think_end_id": think_end}})
    out0, out1, out2 = [], [8], []
    proc = WordBanLogitsProcessor(None, torch.device("cpu"), False)
    proc.update_state(BatchUpdate(3, removed=[], added=[(0, ban, [1, 2], out0), (1, ban, [1, 2], out1),
                                                        (2, SamplingParams(), [1], out2)], moved=[]))
    logits = proc.apply(torch.zeros(3, 60))
    assert torch.isinf(logits[0, 7]) and not torch.isinf(logits[0, 9])  # [8, 9] needs the 8 first
    assert torch.isinf(logits[1, 7]) and torch.isinf(logits[1, 9])
    assert not torch.isinf(logits[2]).any()  # a request without a ban
    out1 += [think_end]  # request 1 stopped thinking: free
    proc.update_state(BatchUpdate(3, removed=[], added=[], moved=[(0, 2, MoveDirectionality.SWAP)]))
    logits = proc.apply(torch.zeros(3, 60))
    assert not torch.isinf(logits[1]).any() and not torch.isinf(logits[0]).any()
    assert torch.isinf(logits[2, 7])  # request 0 now sits at row 2
    proc.update_state(BatchUpdate(2, removed=[2], added=[], moved=[]))
    assert not torch.isinf(proc.apply(torch.zeros(3, 60))).any()
    prompt_end = [SamplingParams(extra_args={KEY: {"sequences": [[2, 9]], "think_end_id": None}})]
    proc.update_state(BatchUpdate(1, removed=[], added=[(0, prompt_end[0], [1, 2], [])], moved=[]))
    assert torch.isinf(proc.apply(torch.zeros(1, 60))[0, 9])  # the prefix may end the prompt, as in HF
