import numpy as np
import pytest
import torch

from reasoning_sae import UserError, load_lm
from reasoning_sae.models import LanguageModel
from reasoning_sae.models.lm import ActivationBatch


def _hidden_states(lm: LanguageModel, ids):
    with torch.no_grad():
        return lm.model(ids, output_hidden_states=True).hidden_states


@pytest.fixture(scope="module")
def ids(smollm2):
    text = "Okay, so I need to find x. Wait, 7 times 8 is 56, not 54. Hmm, let me check that again."
    return smollm2.tokenizer([text, text.upper()], return_tensors="pt", padding=True)["input_ids"]


@pytest.mark.parametrize("layer", [0, 7, 18, 28])
def test_resid_post_equals_hf_hidden_states_on_embedded_model(smollm2, ids, layer):
    acts = smollm2.activations(ids, hook=f"blocks.{layer}.hook_resid_post")
    assert acts.shape == (*ids.shape, 576)
    torch.testing.assert_close(acts, _hidden_states(smollm2, ids)[layer + 1], atol=1e-5, rtol=0)


def test_last_layer_resid_post_is_before_the_final_norm(smollm2, ids):
    acts = smollm2.activations(ids, hook="blocks.29.hook_resid_post")
    torch.testing.assert_close(smollm2.model.model.norm(acts), _hidden_states(smollm2, ids)[30], atol=1e-5, rtol=0)


def test_several_hooks_in_one_pass(smollm2, ids):
    hooks = ["blocks.3.hook_resid_pre", "blocks.18.hook_resid_post", "blocks.5.hook_resid_post"]
    acts = smollm2.activations(ids, hook=hooks)
    hidden = _hidden_states(smollm2, ids)
    assert list(acts) == hooks
    torch.testing.assert_close(acts[hooks[0]], hidden[3], atol=1e-5, rtol=0)
    torch.testing.assert_close(acts[hooks[1]], hidden[19], atol=1e-5, rtol=0)
    torch.testing.assert_close(acts[hooks[2]], hidden[6], atol=1e-5, rtol=0)


def test_forward_stops_after_the_deepest_hook(smollm2, ids):
    hooks_before = [len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in smollm2.layers]
    calls = []
    modules = [*smollm2.layers, smollm2.model.model.norm, smollm2.model.lm_head]
    handles = [m.register_forward_hook(lambda *_, i=i: calls.append(i)) for i, m in enumerate(modules)]
    try:
        smollm2.activations(ids, hook="blocks.18.hook_resid_post")
    finally:
        for h in handles:
            h.remove()
    assert calls == list(range(19))
    assert [len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in smollm2.layers] == hooks_before


def test_resid_post_equals_hf_on_tiny_random_llama(tiny_llama_dir):
    lm = load_lm(str(tiny_llama_dir), device="cpu")
    ids = torch.randint(0, 1000, (3, 17))
    hidden = _hidden_states(lm, ids)
    for layer in range(lm.n_layers - 1):
        torch.testing.assert_close(lm.activations(ids, hook=f"blocks.{layer}.hook_resid_post"),
                                   hidden[layer + 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(lm.activations(ids, hook="blocks.0.hook_resid_pre"), hidden[0], atol=1e-5, rtol=0)


def _tiny_ids():
    ids = np.random.default_rng(0).integers(3, 1000, size=(5, 7))
    ids[1, 3], ids[4, 5] = 2, 1  # special tokens
    return ids


def test_iter_activations_batches_in_order_with_keep_masks(tiny_llama_dir):
    lm = load_lm(str(tiny_llama_dir), device="cpu")
    ids = _tiny_ids()
    hooks = ["blocks.1.hook_resid_post", "blocks.0.hook_resid_pre"]
    batches = list(lm.iter_activations(ids, hooks, 2, ignore_token_ids=[1, 2], sink_positions=1))
    assert isinstance(batches[0], ActivationBatch) and batches[0]._fields == ("start", "ids_BS", "keep_BS", "acts")
    assert [b.start for b in batches] == [0, 2, 4] and [len(b.ids_BS) for b in batches] == [2, 2, 1]
    assert all(b.ids_BS.dtype == torch.long and b.keep_BS.dtype == torch.bool for b in batches)
    assert torch.cat([b.ids_BS for b in batches]).tolist() == ids.tolist()
    keep = ~torch.isin(torch.as_tensor(ids), torch.tensor([1, 2]))
    keep[:, 0] = False
    assert torch.cat([b.keep_BS for b in batches]).tolist() == keep.tolist()
    whole = lm.activations(ids, hook=hooks)
    for b in batches:
        assert list(b.acts) == hooks
        for hook in hooks:
            torch.testing.assert_close(b.acts[hook], whole[hook][b.start : b.start + len(b.ids_BS)], atol=1e-5, rtol=0)


def test_iter_activations_one_hook_gives_the_tensor_of_activations(tiny_llama_dir, capsys):
    lm = load_lm(str(tiny_llama_dir), device="cpu")
    ids = _tiny_ids()
    (batch,) = lm.iter_activations(ids.tolist(), "blocks.0.hook_resid_post", 8, progress="reading")
    assert torch.equal(batch.acts, lm.activations(ids, hook="blocks.0.hook_resid_post"))
    assert batch.keep_BS.all() and "reading" in capsys.readouterr().err
    list(lm.iter_activations(torch.as_tensor(ids), "blocks.0.hook_resid_post", 8))
    assert capsys.readouterr().err == ""  # no progress bar unless asked
    with pytest.raises(UserError, match="batch_sequences=0"):
        next(lm.iter_activations(ids, "blocks.0.hook_resid_post", 0))


def test_attention_mask_is_respected(smollm2):
    batch = smollm2.tokenizer(["Hmm, wait.", "Alternatively, we could try a longer sentence here."],
                              return_tensors="pt", padding=True)
    acts = smollm2.activations(batch["input_ids"], hook="blocks.4.hook_resid_post",
                               attention_mask=batch["attention_mask"])
    hidden = smollm2.model(**batch, output_hidden_states=True).hidden_states[5]
    torch.testing.assert_close(acts, hidden, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("hook", "message"), [
    ("blocks.30.hook_resid_post", "30 layers"),
    ("blocks.x.hook_resid_post", "unknown hook name"),
    ("blocks.3.hook_attn_out", "unknown hook name"),
    ("model.layers.3", "unknown hook name"),
])
def test_bad_hooks_name_the_fix(smollm2, hook, message):
    with pytest.raises(UserError, match=message):
        smollm2.activations([1, 2, 3], hook=hook)


def test_generate_greedy(smollm2):
    out = smollm2.generate(["What is 2 + 2?", "Name a colour."], max_new_tokens=6)
    assert len(out) == 2 and all(isinstance(t, str) and t for t in out)
    assert out == smollm2.generate(["What is 2 + 2?", "Name a colour."], max_new_tokens=6)


def test_embedded_model_shape_and_tokens(smollm2):
    assert (smollm2.n_layers, smollm2.d_model) == (30, 576)
    assert smollm2.dtype == torch.float32
    assert smollm2.tokenizer.chat_template and "<|im_start|>" in smollm2.chat_prompt("hi")
    assert (smollm2.bos_token_id, smollm2.eos_token_id) == (1, 2)


def test_sae_is_checked_against_the_model(smollm2):
    from reasoning_sae import SAEConfig, SparseAutoencoder

    def sae(d_in=576, **metadata):
        return SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=8, metadata=metadata))

    assert sae(hook_name="blocks.18.hook_resid_post", model_name="smollm2-135m-instruct").hook_name(smollm2) \
        == "blocks.18.hook_resid_post"
    with pytest.raises(UserError, match="d_in=4096 does not match the model width d_model=576"):
        sae(4096, hook_name="blocks.19.hook_resid_post").hook_name(smollm2)
    with pytest.raises(UserError, match="30 layers"):
        sae(hook_name="blocks.31.hook_resid_post").hook_name(smollm2)
    with pytest.raises(UserError, match="trained on 'deepseek-ai/DeepSeek-R1-Distill-Llama-8B'"):
        sae(hook_name="blocks.1.hook_resid_post", model_name="deepseek-ai/DeepSeek-R1-Distill-Llama-8B").hook_name(smollm2)
    with pytest.raises(UserError, match="names no hook_name"):
        sae().hook_name(smollm2)
