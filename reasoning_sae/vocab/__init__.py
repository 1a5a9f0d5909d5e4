"""The reasoning vocabulary (paper Sec. 3.1): word frequencies in traces vs solutions, and the surface forms."""

from reasoning_sae.vocab.frequency import frequency_table, kept_rank, top_words, words
from reasoning_sae.vocab.vocabulary import (
    DEFAULT_VOCABULARY,
    WORDS,
    derive_vocabulary,
    groups,
    load_vocabulary,
    save_vocabulary,
    surface_forms,
    word_of,
)

__all__ = ["DEFAULT_VOCABULARY", "WORDS", "derive_vocabulary", "frequency_table", "groups", "kept_rank",
           "load_vocabulary", "save_vocabulary", "surface_forms", "top_words", "word_of", "words"]
