import json

import pytest

from reasoning_sae import UserError
from reasoning_sae.vocab import (DEFAULT_VOCABULARY, WORDS, derive_vocabulary, frequency_table, groups,
                                 load_vocabulary, save_vocabulary, surface_forms, word_of)


def test_default_is_the_released_34_surface_forms_in_10_groups():
    assert len(DEFAULT_VOCABULARY) == 34 and len(set(DEFAULT_VOCABULARY)) == 34
    grouped = groups(DEFAULT_VOCABULARY)
    assert list(grouped) == list(WORDS) and len(grouped) == 10
    assert grouped["but"] == ["But"] and grouped["another"] == ["Another"]
    assert grouped["let me"] == ["let me", " let me", "Let me", " Let me"]
    assert DEFAULT_VOCABULARY[:4] == ("alternatively", " alternatively", "Alternatively", " Alternatively")
    assert all(len(forms) == 4 for word, forms in grouped.items() if word not in ("but", "another"))


def test_a_surface_form_belongs_to_its_stripped_lowercase_word():
    assert [word_of(f) for f in ("Wait", " wait", "  Let me", "HMM ")] == ["wait", "wait", "let me", "hmm "]
    assert groups([" Wait", "wait", "But"]) == {"wait": [" Wait", "wait"], "but": ["But"]}


def test_surface_forms_and_bad_templates():
    assert surface_forms("Wait") == ["wait", " wait", "Wait", " Wait"]
    assert surface_forms("hmm", (" W",)) == [" Hmm"]
    with pytest.raises(UserError, match="unknown surface form"):
        surface_forms("wait", ("w!",))


def test_save_and_load_round_trip(tmp_path):
    path = save_vocabulary(DEFAULT_VOCABULARY, tmp_path / "reason_tokens.json")
    assert json.loads(path.read_text()) == list(DEFAULT_VOCABULARY)
    assert load_vocabulary(path) == list(DEFAULT_VOCABULARY)


@pytest.mark.parametrize(("content", "message"), [
    ("[]", "is empty"),
    ('{"words": ["wait"]}', "not a JSON list"),
    ('["wait", 3]', "not non-empty strings"),
    ('["wait", " "]', "not non-empty strings"),
    ("[wait", "not valid JSON"),
])
def test_bad_files_are_one_line_user_errors(tmp_path, content, message):
    path = tmp_path / "v.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as err:
        load_vocabulary(path)
    assert "\n" not in str(err.value)


def test_missing_file_and_empty_save(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_vocabulary(tmp_path / "none.json")
    with pytest.raises(UserError, match="is empty"):
        save_vocabulary([], tmp_path / "v.json")


def test_derive_vocabulary_from_the_kept_words():
    table = frequency_table(["hmm wait wait hmm maybe", "wait"], ["the answer"], top_k=2, threshold=1.0)
    assert derive_vocabulary(table) == [*surface_forms("wait"), *surface_forms("hmm")]
    assert derive_vocabulary(table, forms=("W",), top_k=1) == ["Wait"]
