import pytest

from reasoning_sae.evaluate.metrics import generation_metrics, thinking_text, word_counts
from reasoning_sae.vocab.vocabulary import DEFAULT_VOCABULARY


def test_thinking_text_stops_at_think_end_or_takes_everything():
    assert thinking_text("a b</think>answer", "</think>") == "a b"
    assert thinking_text("no think tag", "</think>") == "no think tag"
    assert thinking_text("a b<end>answer</think>", "<end>") == "a b"  # the model's marker, not a fixed one
    assert thinking_text("a b</think>answer", None) == "a b</think>answer"  # no thinking segment: all of it


def test_word_counts_match_whole_surface_forms_only():
    text = "Wait, let me see. But the button... Hmm, maybe. but wait: Let me alternatively try; perhaps not."
    counts = word_counts(text, DEFAULT_VOCABULARY)
    assert counts["wait"] == 2 and counts["let me"] == 2 and counts["hmm"] == 1 and counts["maybe"] == 1
    assert counts["but"] == 1  # only "But" is a form; "button" and lowercase "but" are not
    assert counts["alternatively"] == 1 and counts["perhaps"] == 1 and counts["therefore"] == 0


def test_generation_metrics_count_tokens_up_to_think_end(smollm2_tokenizer):
    outputs = ["Wait, so x</think> The answer is 2.", "Hmm no tag here"]
    metrics = generation_metrics(smollm2_tokenizer, outputs, DEFAULT_VOCABULARY, "</think>")
    n = [len(smollm2_tokenizer.encode(t, add_special_tokens=False)) for t in ("Wait, so x", "Hmm no tag here")]
    total = sum(len(smollm2_tokenizer.encode(o, add_special_tokens=False)) for o in outputs)
    assert metrics["think_tokens"] == pytest.approx(sum(n) / 2)
    assert metrics["per_1k/wait"] == pytest.approx(1000 / total)
    assert metrics["reasoning_words_per_1k"] == pytest.approx(2000 / total)
    assert generation_metrics(smollm2_tokenizer, [], DEFAULT_VOCABULARY, "</think>") == {}
    whole = generation_metrics(smollm2_tokenizer, outputs, DEFAULT_VOCABULARY, None)
    assert whole["think_tokens"] == whole["output_tokens"]
