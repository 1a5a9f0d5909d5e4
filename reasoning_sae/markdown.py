"""Markdown pipe tables as the package writes them (tables of the evaluate, diff, autointerp and figures stages)."""

import pandas as pd
from tabulate import DataRow, TableFormat

# GitHub pipe tables: `| a | b |` rows, cells unpadded, `|---|---|` under the header
_PIPES = TableFormat(lineabove=None, linebelowheader=lambda widths, _aligns: "|" + "---|" * len(widths),
                     linebetweenrows=None, linebelow=None, headerrow=DataRow("|", "|", "|"),
                     datarow=DataRow("|", "|", "|"), padding=1, with_header_hide=None)


def markdown_table(frame: pd.DataFrame) -> str:
    """A Markdown pipe table of a frame of strings, column names as the header (no index), cells as they are
    (escape `|` beforehand), each line ending in a newline."""
    unaligned = [None] * frame.shape[1]
    return frame.to_markdown(index=False, tablefmt=_PIPES, colalign=unaligned, headersalign=unaligned,
                             disable_numparse=True) + "\n"
