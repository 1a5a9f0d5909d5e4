import re

import pandas as pd
import pytest
import torch

from reasoning_sae import UserError
from reasoning_sae.evaluate.wordban import ThinkingOnly, ban_processor, banned_sequences, random_forms, random_words
from reasoning_sae.vocab.vocabulary import DEFAULT_VOCABULARY, surface_forms


def _frequencies():
    words = ["wait", "the", "so", "we", "number", "check", "then", "hmm", "answer", "is", "of", "to", "x", "total"]
    p = [0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.04, 0.04, 0.03, 0.02, 0.02]
    return pd.DataFrame({"word": words, "p_think": p})


def test_banned_sequences_are_the_vocabulary_token_sequences(smollm2_tokenizer):
    seqs = banned_sequences(smollm2_tokenizer, DEFAULT_VOCABULARY)
    assert smollm2_tokenizer.encode(" wait", add_special_tokens=False) in seqs
    assert smollm2_tokenizer.encode("Let me", add_special_tokens=False) in seqs
    assert len(seqs) == len({tuple(s) for s in seqs}) <= len(DEFAULT_VOCABULARY)


def test_random_control_draws_as_many_words_outside_the_vocabulary_deterministically():
    forms = random_forms(DEFAULT_VOCABULARY, _frequencies(), seed=3)
    assert forms == random_forms(DEFAULT_VOCABULARY, _frequencies(), seed=3)
    assert forms != random_forms(DEFAULT_VOCABULARY, _frequencies(), seed=4)
    words = {f.strip().lower() for f in forms}
    assert len(words) == 10 and not words & {"wait", "hmm"}
    assert len(forms) == 40  # each word in the four surface forms
    with pytest.raises(UserError, match="fewer than the 20 to ban"):
        random_words(_frequencies(), 20, seed=0)


def test_ban_is_lifted_for_rows_that_finished_thinking():
    think_end, banned = 7, [[3], [4, 5]]
    ids = torch.tensor([[1, 2, 4, 7, 4],    # prompt [1, 2], then thinking ended at token 7
                        [1, 2, 4, 9, 4]])   # still thinking, the last token starts the banned pair
    scores = torch.zeros(2, 10)
    out = ban_processor(banned, prompt_length=2, eos_token_id=0, think_end_id=think_end)(ids, scores)
    assert torch.equal(out[0], scores[0])
    assert out[1, 3] == -float("inf") and out[1, 5] == -float("inf") and out[1, 6] == 0
    everywhere = ban_processor(banned, 2, 0, think_end, scope="all")(ids, scores)
    assert everywhere[0, 3] == -float("inf")
    assert isinstance(ban_processor(banned, 2, 0, None), ThinkingOnly)
    with pytest.raises(UserError, match="unknown ban scope"):
        ban_processor(banned, 2, 0, None, scope="answer")


def test_banned_word_disappears_from_greedy_generation(smollm2):
    prompt = ["Write one sentence about the weather today."]
    free = smollm2.generate(prompt, max_new_tokens=16)[0]
    word = re.findall(r"[A-Za-z]{3,}", free)[0].lower()  # ban the first word the model chose
    forms = surface_forms(word)
    context = smollm2.tokenizer(smollm2.chat_prompt(prompt[0]), return_tensors="pt", add_special_tokens=False)
    ban = ban_processor(banned_sequences(smollm2.tokenizer, forms), context["input_ids"].shape[1],
                        smollm2.eos_token_id, None)
    banned = smollm2.generate(prompt, max_new_tokens=16, logits_processor=[ban])[0]
    assert word not in re.findall(r"[a-z]+", banned.lower()) and banned != free
