import datasets
import pytest

from reasoning_sae import UserError
from reasoning_sae.data.packing import pack


class CharTokenizer:
    """One token per character (its code point), so expected packs can be written by hand."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[ord(c) for c in t] for t in texts]}


def _pack(texts, **kwargs):
    return pack(datasets.Dataset.from_dict({"text": texts}), CharTokenizer(), **kwargs)["input_ids"]


def test_documents_are_joined_by_the_separator_and_cut_into_full_sequences():
    # a b c SEP d e SEP f g h SEP -> two full sequences of 4; the last 3 tokens are dropped
    assert _pack(["abc", "de", "fgh"], context_size=4, separator_id=0) == [[97, 98, 99, 0], [100, 101, 0, 102]]


def test_bos_starts_every_sequence_and_the_remainder_is_dropped():
    assert _pack(["abcdefg"], context_size=3, separator_id=None, bos_id=1) == [[1, 97, 98], [1, 99, 100], [1, 101, 102]]


def test_every_sequence_has_context_size_tokens():
    seqs = _pack([chr(97 + i % 26) * (i + 1) for i in range(50)], context_size=16, separator_id=2, batch_size=7)
    assert seqs and all(len(s) == 16 for s in seqs)


@pytest.mark.parametrize("context_size", [0, 1])
def test_context_size_below_two_is_rejected(context_size):
    with pytest.raises(UserError, match="data.context_size to 2 or more"):
        _pack(["abc"], context_size=context_size, separator_id=0)
