"""Documents as the model reads them: OpenThoughts rows and LMSYS conversations as chat strings.

`chat_format="r1"` reproduces the released code's literal DeepSeek-R1 strings (training/datasets/prepare_*_dataset.py);
`chat_format="template"` uses the tokenizer's own chat template, for models without the R1 tokens. Both write an
OpenThoughts trace between R1's thinking markers, as the traces were generated (the demo model's think_start and
think_end are the same text).
"""

import json

R1_USER = "<｜User｜>"
R1_ASSISTANT = "<｜Assistant｜>"
R1_EOS = "<｜end▁of▁sentence｜>"
R1_THINK_START, R1_THINK_END = "<think>", "</think>"

# The OpenThoughts-114k system prompt (open-thoughts repo, DEEPSEEK_R1_SYSTEM_PROMPT), leading and trailing
# newlines included, as the released code's prepare_openthoughts_dataset.py uses it.
OPENTHOUGHTS_SYSTEM_PROMPT = """
Your role as an assistant involves thoroughly exploring questions through a systematic long thinking process
before providing the final precise and accurate solutions. This requires engaging in a comprehensive cycle of
analysis, summarizing, exploration, reassessment, reflection, backtracing, and iteration to develop well-considered
thinking process.
"""

MATH_PREFIX = "Return your final response within \\boxed{}. "
CODE_STDIN = (
    "Generate an executable Python function generated from the given prompt. The function should take stdin as "
    "input and print the output. Simply call the function after the definition."
)
CODE_FN = (
    "Generate an executable Python function generated from the given prompt. Return the function body without "
    "invoking it at the final solution."
)
CHAT_FORMATS = ("r1", "template")


def openthoughts_user_prompt(row: dict) -> str:
    """The domain-specific user turn of an OpenThoughts row (code instruction, math \\boxed{} prefix)."""
    domain = row.get("domain")
    if domain == "math":
        return MATH_PREFIX + row["problem"]
    if domain != "code":
        return row["problem"]
    try:
        fn_name = json.loads(row.get("test_cases") or "{}").get("fn_name")
    except (json.JSONDecodeError, AttributeError):
        fn_name = None
    prompt = (CODE_FN if fn_name else CODE_STDIN) + row["problem"]
    return prompt + ("\n" + row["starter_code"] if row.get("starter_code") else "")


def thinking_response(reasoning: str, solution: str) -> str:
    return f"{R1_THINK_START}\n{reasoning}\n{R1_THINK_END}\n{solution}"


def format_openthoughts(row: dict, chat_format: str = "r1", tokenizer=None) -> str:
    """`{system}<｜User｜>{user}<｜Assistant｜><think>\\n{reasoning}\\n</think>\\n{solution}` (r1 format)."""
    user = openthoughts_user_prompt(row)
    response = thinking_response(row["deepseek_reasoning"], row["deepseek_solution"])
    if chat_format == "r1":
        return f"{OPENTHOUGHTS_SYSTEM_PROMPT}{R1_USER}{user}{R1_ASSISTANT}{response}"
    messages = [
        {"role": "system", "content": OPENTHOUGHTS_SYSTEM_PROMPT.strip()},
        {"role": "user", "content": user},
        {"role": "assistant", "content": response},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def format_lmsys(conversation: list[dict], chat_format: str = "r1", tokenizer=None, final_eos: bool = False) -> str:
    """LMSYS-Chat-1M turns as `<｜User｜>…<｜Assistant｜>…<｜end▁of▁sentence｜>` (r1: no BOS, raw system text).

    As the released prepare_lmsys_dataset.py, an assistant turn ends with the end-of-sentence token unless it is the
    conversation's last message (the packer's separator then ends it); `final_eos` puts it after the last one too."""
    if chat_format != "r1":
        return tokenizer.apply_chat_template(list(conversation), tokenize=False)
    parts = []
    for i, message in enumerate(conversation):
        role, content = message["role"], message["content"]
        if role == "system":
            parts.append(content)
        elif role == "user":
            parts.append(R1_USER + content)
        elif role == "assistant":
            last = i == len(conversation) - 1
            parts.append(R1_ASSISTANT + content + (R1_EOS if final_eos or not last else ""))
    return "".join(parts)
