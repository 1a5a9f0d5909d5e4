"""The one Markdown pipe-table writer every table of the package goes through."""

import pandas as pd

from reasoning_sae.figures.common import markdown, parse_markdown_table
from reasoning_sae.markdown import markdown_table


def test_cells_are_written_as_they_are_unpadded_and_unaligned():
    frame = pd.DataFrame([["1", "0.50", " x "], ["", "–", "a\\|b"]], columns=["", "same", "same"])
    assert markdown_table(frame) == "|  | same | same |\n|---|---|---|\n| 1 | 0.50 |  x  |\n|  | – | a\\|b |\n"
    assert markdown_table(frame.iloc[:0]) == "|  | same | same |\n|---|---|---|\n"


def test_the_figures_writer_escapes_pipes_and_newlines_and_reads_back():
    frame = pd.DataFrame({"key": ["a|b", "two\nlines"], "n": [1, 2.5]})
    text = markdown(frame)
    assert text == "| key | n |\n|---|---|\n| a\\|b | 1.0 |\n| two<br>lines | 2.5 |\n"
    assert parse_markdown_table(text).to_dict("list") == {"key": ["a|b", "two\nlines"], "n": ["1.0", "2.5"]}
