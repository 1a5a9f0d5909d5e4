import numpy as np
import pytest

from reasoning_sae import UserError
from reasoning_sae.falsify.texts import ablate, allocate, check_room, inject, word_starts

WINDOW = (2, 3)


def chat(rows: int = 3, seq: int = 64) -> np.ndarray:
    return np.arange(1000, 1000 + rows * seq).reshape(rows, seq)  # every token unique: where it came from is known


def test_allocate_gives_each_feature_its_sites_sharing_common_tokens():
    triggers = {1: [10, 11], 2: [10], 3: [12, 13, 14]}
    counts = allocate(triggers, 4)
    for tokens in triggers.values():
        assert sum(counts.get(t, 0) for t in tokens) >= 4
    assert (counts[10], counts[11]) == (4, 2)  # feature 1 splits its 4; feature 2 tops up the shared token
    assert sum(counts[t] for t in (12, 13, 14)) == 4 and max(counts[t] for t in (12, 13, 14)) == 2
    capped = allocate({1: [10, 11]}, 4, cap={10: 1, 11: 1})
    assert capped == {10: 1, 11: 1}  # no more occurrences: fewer sites


def test_injected_tokens_sit_where_recorded_windows_apart_and_the_rest_is_the_chat_text():
    rng = np.random.default_rng(0)
    chat_HS = chat()
    tokens = [7, 8, 9, 7, 8, 9, 7, 8, 9, 7]
    texts = inject(chat_HS, tokens, 4, WINDOW, 1, rng)
    assert texts.ids_TS.shape == (3, 64) and len(texts.pos_N) == len(tokens)
    assert sorted(texts.token_N.tolist()) == sorted(tokens)
    assert (texts.ids_TS[texts.text_N, texts.pos_N] == texts.token_N).all()
    for t in range(len(texts.ids_TS)):
        here = texts.text_N == t
        positions = np.sort(texts.pos_N[here])
        assert (np.diff(positions) > sum(WINDOW)).all()  # windows never overlap
        assert positions.min() - WINDOW[0] >= 1 and positions.max() + WINDOW[1] < 64  # clear of the sink and the end
        kept = np.delete(texts.ids_TS[t], texts.pos_N[here])
        origin = texts.origin_N[here][0]
        assert (kept == chat_HS[origin][: len(kept)]).all()  # the chat text in order, cut back to its length
        # the token an insertion precedes is the origin position's token
        assert (texts.ids_TS[t, texts.pos_N[here] + 1] == chat_HS[origin, texts.origin_pos_N[here]]).all()
    again = inject(chat_HS, tokens, 4, WINDOW, 1, np.random.default_rng(0))
    assert (again.ids_TS == texts.ids_TS).all()  # seeded


def test_insertions_go_before_word_starts_when_the_sequence_has_them():
    chat_HS = chat(1, 64)
    insertable = np.zeros(2000, dtype=bool)
    insertable[chat_HS[0, 20:40]] = True
    texts = inject(chat_HS, [7, 8, 9], 3, WINDOW, 1, np.random.default_rng(1), insertable)
    assert set(texts.origin_pos_N.tolist()) <= set(range(20, 40))


def test_word_starts_reads_the_leading_space_of_each_token(smollm2_tokenizer):
    starts = word_starts(smollm2_tokenizer)
    ids = smollm2_tokenizer.encode("Wait, let me check", add_special_tokens=False)
    assert [bool(starts[i]) for i in ids] == [False, False, True, True, True]  # Wait , Ġlet Ġme Ġcheck


def test_ablation_replaces_the_context_around_each_trigger_and_keeps_the_trigger():
    rng = np.random.default_rng(0)
    reasoning_RS = np.arange(64 * 2).reshape(2, 64) % 50
    reasoning_RS[0, [30, 40, 55]] = 77
    reasoning_RS[1, [20]] = 88
    keep_RS = np.ones_like(reasoning_RS, dtype=bool)
    chat_HS = chat(2, 64)
    texts = ablate(reasoning_RS, keep_RS, {1: [77], 2: [88]}, 3, 8, WINDOW, chat_HS, 1, rng)
    assert (texts.ids_TS[texts.text_N, texts.pos_N] == texts.token_N).all()
    # 77 at 30 and 40 are closer than a span (8 + 1 + 3): one of them only; 55 fits
    assert sorted(texts.token_N.tolist()) == [77, 77, 88]
    for t, p, r in zip(texts.text_N, texts.pos_N, texts.origin_N, strict=True):
        span = np.r_[p - 8 : p, p + 1 : p + 4]
        assert (texts.ids_TS[t, span] >= 1000).all()  # neutral chat text around the trigger
    changed = texts.ids_TS != reasoning_RS[texts.origin_N[np.unique(texts.text_N, return_index=True)[1]]]
    assert changed.sum() == len(texts.pos_N) * (8 + 3)  # nothing else moved


def test_sequences_too_short_for_the_settings_are_one_line_errors():
    with pytest.raises(UserError, match="lower falsify.injections"):
        check_room(16, 12, 4, WINDOW, 1)
    with pytest.raises(UserError, match="falsify.ablation=1 must cover the window"):
        check_room(64, 4, 1, WINDOW, 1)
    check_room(64, 16, 16, WINDOW, 1)
