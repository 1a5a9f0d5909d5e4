"""The embedded demo corpus: a small, synthetic stand-in for OpenThoughts-114k and LMSYS-Chat-1M.

Nothing here is real model output. `reasoning_rows` writes DeepSeek-R1-style thinking traces, concise solutions
and formal reference solutions for parametrised problems whose answers are computed in Python; `chat_rows` writes
ordinary assistant conversations. Both are deterministic in (seed, row index), use only the standard library and
download nothing, so the pipeline can run offline on a small model.
"""

from reasoning_sae.data.demo._common import DOMAINS, SOURCE
from reasoning_sae.data.demo.chat import chat_rows
from reasoning_sae.data.demo.traces import reasoning_rows

__all__ = ["DOMAINS", "SOURCE", "chat_rows", "reasoning_rows"]
