"""Feature records on hand-set activations: a fake LM whose residual is a fixed embedding of each token id and an
identity SAE, so every feature's activation at every token is written below."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from reasoning_sae import UserError
from reasoning_sae.interpret.features import feature_records, logit_effects
from reasoning_sae.models.lm import LanguageModel
from tests.helpers import identity_sae

HOOK = "blocks.0.hook_resid_post"


class FakeTokenizer:
    def decode(self, ids, **_):
        return "".join(f"<t{i}>" for i in ids)


class FakeModel(torch.nn.Module):
    """What logit_effects reads: get_output_embeddings() and a final `norm` with a weight."""

    def __init__(self, d: int, vocab: int):
        super().__init__()
        self.norm = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, vocab, bias=False)

    def get_output_embeddings(self):
        return self.head


class FakeLM:
    device = torch.device("cpu")
    activation_cache = None  # LanguageModel's: no reuse of an earlier pass

    def __init__(self, embedding: torch.Tensor):
        self.embedding, self.tokenizer = embedding, FakeTokenizer()
        self.model = FakeModel(embedding.shape[1], embedding.shape[0])

    def activations(self, ids_BS, hook):
        return self.embedding[ids_BS]

    iter_activations = LanguageModel.iter_activations


def lm_with(values: dict[int, list[float]], n_tokens: int) -> FakeLM:
    """Token id t has activation values[f][t] on feature f (features not named are 0)."""
    emb = torch.zeros(n_tokens, 3)
    for f, vals in values.items():
        emb[: len(vals), f] = torch.tensor(vals)
    return FakeLM(emb)


# two sequences of 10 distinct tokens: ids 0..9 and 10..19
IDS = [list(range(10)), list(range(10, 20))]
FEATURE0 = [0, 0.5, 0, 3.0, 0, 0, 0, 0, 0, 1.0,  # seq 0
            4.0, 0, 0, 2.0, 0, 0, 0, 0, 0.25, 0]  # seq 1


def records(lm, ids=IDS, features=(0, 1), **kwargs):
    kwargs = {"top_n": 4, "window": (2, 1), "batch_sequences": 1, "hook": HOOK, **kwargs}
    return feature_records(lm, identity_sae(3), ids, features, **kwargs)


def test_f_max_density_and_top_contexts():
    rec = records(lm_with({0: FEATURE0}, 20))
    r = rec[0]
    assert r["f_max"] == 4.0 and r["f_max_at"] == {"sequence": 1, "position": 0, "token": "<t10>"}
    assert (r["fires"], r["tokens"]) == (6, 20) and r["density"] == pytest.approx(0.3)
    top = r["top_contexts"]
    assert [c["activation"] for c in top] == [4.0, 3.0, 2.0, 1.0]  # best first, across batches
    assert [(c["sequence"], c["position"]) for c in top] == [(1, 0), (0, 3), (1, 3), (0, 9)]
    first, middle, last = top[0], top[1], top[3]
    assert first["tokens"] == ["<t10>", "<t11>"] and first["acts"] == [4.0, 0.0]  # clipped at the start
    assert middle["tokens"] == ["<t1>", "<t2>", "<t3>", "<t4>"] and middle["acts"] == [0.5, 0.0, 3.0, 0.0]
    assert last["tokens"] == ["<t7>", "<t8>", "<t9>"] and last["acts"] == [0.0, 0.0, 1.0]  # clipped at the end
    assert [(c["center"], c["max_index"]) for c in (first, middle, last)] == [(0, 0), (2, 2), (2, 2)]
    assert sum(r["histogram"]["counts"]) == 6
    edges = r["histogram"]["edges"]
    assert edges[0] <= 0.25 and edges[-1] >= 4.0 and all(b / a == pytest.approx(edges[1] / edges[0])
                                                          for a, b in zip(edges, edges[1:]))  # log-spaced
    dead = rec[1]
    assert dead["f_max"] == 0.0 and dead["f_max_at"] is None and dead["top_contexts"] == [] and dead["fires"] == 0
    assert dead["quantiles"] == [] and dead["histogram"] == {"edges": [], "counts": []}


def test_ignored_tokens_never_count():
    r = records(lm_with({0: FEATURE0}, 20), ignore_token_ids=[10])[0]
    assert r["f_max"] == 3.0 and (r["fires"], r["tokens"]) == (5, 19)
    assert r["top_contexts"][0]["acts"] == [0.5, 0.0, 3.0, 0.0]


def test_window_maximum_is_marked_even_off_centre():
    values = [0, 0, 0, 0, 2.0, 0, 0, 5.0, 0, 0]  # 2.0 at position 4 sees 5.0 three tokens later
    r = records(lm_with({0: values}, 10), ids=[list(range(10))], window=(1, 3))[0]
    second = r["top_contexts"][1]
    assert second["activation"] == 2.0 and second["center"] == 1 and second["max_index"] == 4


@pytest.mark.parametrize("reservoir", [1024, 8])
def test_quantile_bands(reservoir):
    ids = [list(range(s * 10, s * 10 + 10)) for s in range(4)]
    lm = lm_with({0: [float(v) for v in range(1, 41)]}, 40)  # activation t + 1 at token t
    r = records(lm, ids=ids, features=[0], bands=4, per_band=3, reservoir=reservoir, seed=3)[0]
    bands = r["quantiles"]
    assert [b["band"] for b in bands] == [3, 2, 1, 0]  # highest first
    if reservoir >= 40:  # every occurrence kept: the band edges are the exact quartiles of 1..40
        assert [b["low"] for b in bands] == pytest.approx([30.25, 20.5, 10.75, 1.0])
        assert bands[0]["high"] == 40.0 and all(len(b["examples"]) == 3 for b in bands)
    for band in bands:
        shown = [ex["activation"] for ex in band["examples"]]
        assert shown == sorted(shown, reverse=True)
        for ex in band["examples"]:
            assert band["low"] <= ex["activation"] <= band["high"]
            assert ex["acts"][ex["center"]] == ex["activation"]
            assert ex["token"] == f"<t{int(ex['activation']) - 1}>"
    again = records(lm, ids=ids, features=[0], bands=4, per_band=3, reservoir=reservoir, seed=3)[0]
    assert again["quantiles"] == bands  # seeded


def test_logit_effects_by_hand():
    config = LlamaConfig(hidden_size=4, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                         num_key_value_heads=1, vocab_size=6, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        model.lm_head.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1],
                                                 [1, 1, 1, 1], [-1, 0, 0, 0]]))
    W_dec = torch.tensor([[1.0, 0.0, -1.0, 0.5]])  # times the norm weight: [1, 0, -3, 2]
    (effect,) = logit_effects(model, FakeTokenizer(), W_dec, k=2)
    assert [(t["id"], t["value"]) for t in effect["top"]] == [(3, 2.0), (0, 1.0)]
    assert [(t["id"], t["value"]) for t in effect["bottom"]] == [(2, -3.0), (5, -1.0)]
    assert effect["top"][0]["token"] == "<t3>" and sum(effect["histogram"]["counts"]) == 6


def test_records_carry_logit_effects_and_refuse_bad_ids():
    lm = lm_with({0: FEATURE0}, 20)
    with torch.no_grad():
        lm.model.norm.weight.fill_(2.0)
        lm.model.head.weight.zero_()
        lm.model.head.weight[7, 0] = 1.5
    r = records(lm, features=[0])[0]
    assert r["logits"]["top"][0] == {"id": 7, "token": "<t7>", "value": 3.0}
    with pytest.raises(UserError, match=r"feature ids \[3\] are outside"):
        records(lm, features=[0, 3])


TEXTS = ["Wait, café naïve — 🤔 hmm, 東京 is 3×4 = 12.", "Let me check: π ≈ 3.14159… ✓"]


@pytest.mark.parametrize("text", TEXTS)
def test_text_pieces_join_to_the_text_without_replacement_characters(smollm2_tokenizer, text):
    from reasoning_sae.interpret.features import text_pieces

    ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
    singles = [smollm2_tokenizer.decode([i]) for i in ids]
    assert any("\ufffd" in s for s in singles)  # the case at stake: characters split over byte-level tokens
    pieces, owner = text_pieces(smollm2_tokenizer, ids)
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)
    assert len(owner) == len(ids) and owner == sorted(owner) and set(owner) == set(range(len(pieces)))


def test_text_pieces_drop_partial_characters_at_the_window_edges(smollm2_tokenizer):
    from reasoning_sae.interpret.features import text_pieces

    ids = smollm2_tokenizer.encode("🤔🤔 ok 🤔", add_special_tokens=False)
    split = [i for i in range(1, len(ids)) if "\ufffd" in smollm2_tokenizer.decode(ids[:i])]
    assert split  # the emoji spans several tokens
    pieces, _ = text_pieces(smollm2_tokenizer, ids[1:-1])  # cut inside the first and the last emoji
    assert not any("\ufffd" in p for p in pieces) and " ok " in "".join(pieces)


def test_a_split_character_is_one_piece_shaded_by_its_largest_token():
    class ByteTokenizer:  # one token per UTF-8 byte, as byte-level BPE splits rare characters
        def decode(self, ids, **_):
            return bytes(ids).decode("utf-8", errors="replace")

    ids = list("aé".encode())  # [97, 195, 169]: é is two tokens
    emb = torch.zeros(256, 3)
    emb[169, 0] = 2.0  # the feature fires on é's second byte
    lm = FakeLM(emb)
    lm.tokenizer = ByteTokenizer()
    top = records(lm, ids=[ids], features=(0,), window=(2, 0))[0]["top_contexts"][0]
    assert top["tokens"] == ["a", "é"] and top["acts"] == [0.0, 2.0]
    assert top["token"] == "é" and top["center"] == 1 and top["max_index"] == 1


def test_held_out_contexts_leave_the_records_as_they_were_and_are_never_shown():
    """Activating ones spread over the bands after the dashboards' picks, silent ones with the feature at 0 across the
    window; none overlaps another or a context the dashboards show."""
    ids = [list(range(s * 20, s * 20 + 20)) for s in range(10)]
    gen = torch.Generator().manual_seed(0)
    values = torch.where(torch.rand(200, generator=gen) < 0.15, torch.rand(200, generator=gen) * 5 + 0.1, 0.0)
    lm = lm_with({0: values.tolist()}, 200)
    kwargs = {"ids": ids, "features": [0], "bands": 2, "per_band": 2, "reservoir": 100, "seed": 3, "top_n": 3}
    plain = records(lm, **kwargs)[0]
    record = records(lm, held_out=5, **kwargs)[0]
    held = record.pop("held_out")
    assert record == plain and "held_out" not in plain  # the dashboards' records do not change
    active, silent = held["activating"], held["non_activating"]
    assert [c["band"] for c in active] == [1, 1, 1, 0, 0] and len(silent) == 5
    for c in active:
        assert c["activation"] > 0 and c["acts"][c["center"]] == pytest.approx(c["activation"], abs=1e-4)
        assert c["activation"] == pytest.approx(float(values[ids[c["sequence"]][c["position"]]]))
    for c in silent:
        window = ids[c["sequence"]][max(0, c["position"] - 2): c["position"] + 2]
        assert c["acts"] == [0.0] * len(window) and all(values[t] == 0 for t in window)
    shown = [*plain["top_contexts"], *(e for band in plain["quantiles"] for e in band["examples"])]
    held_places = [(c["sequence"], c["position"]) for c in [*active, *silent]]
    shown_places = [(c["sequence"], c["position"]) for c in shown]
    assert all(s != s2 or abs(p - p2) > 3 for i, (s, p) in enumerate(held_places)
               for s2, p2 in [*shown_places, *held_places[:i]])  # window (2, 1): 4 tokens
    assert records(lm, held_out=5, **kwargs)[0]["held_out"] == held  # seeded
