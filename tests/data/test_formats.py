import json

from reasoning_sae.data.formats import OPENTHOUGHTS_SYSTEM_PROMPT, format_lmsys, format_openthoughts

ROW = {"problem": "What is 2+3?", "deepseek_reasoning": "Okay. Wait, 5.", "deepseek_solution": "It is \\boxed{5}.",
       "domain": "math", "test_cases": None, "starter_code": None}


def test_openthoughts_math_row_matches_the_released_code_string():
    expected = (
        "\nYour role as an assistant involves thoroughly exploring questions through a systematic long thinking "
        "process\nbefore providing the final precise and accurate solutions. This requires engaging in a "
        "comprehensive cycle of\nanalysis, summarizing, exploration, reassessment, reflection, backtracing, and "
        "iteration to develop well-considered\nthinking process.\n"
        "<｜User｜>Return your final response within \\boxed{}. What is 2+3?"
        "<｜Assistant｜><think>\nOkay. Wait, 5.\n</think>\nIt is \\boxed{5}."
    )
    assert format_openthoughts(ROW) == expected


def test_openthoughts_code_prompts_follow_test_cases_and_starter_code():
    stdin = {**ROW, "domain": "code", "problem": "Read n.", "test_cases": json.dumps({"inputs": ["1"]})}
    assert "<｜User｜>Generate an executable Python function generated from the given prompt. The function should " \
           "take stdin as input and print the output. Simply call the function after the definition.Read n." \
           "<｜Assistant｜>" in format_openthoughts(stdin)
    fn = {**stdin, "test_cases": json.dumps({"fn_name": "f"}), "starter_code": "def f(n):"}
    assert "Return the function body without invoking it at the final solution.Read n.\ndef f(n):<｜Assistant｜>" \
        in format_openthoughts(fn)


def test_openthoughts_science_prompt_is_the_bare_problem():
    row = {**ROW, "domain": "physics", "problem": "Why is the sky blue?"}
    assert f"{OPENTHOUGHTS_SYSTEM_PROMPT}<｜User｜>Why is the sky blue?<｜Assistant｜><think>" in format_openthoughts(row)


def test_lmsys_r1_format():
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"},
                    {"role": "assistant", "content": "Bye!"}]
    released = "Be brief.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>Bye<｜Assistant｜>Bye!"
    assert format_lmsys(conversation) == released  # the last turn is ended by the packer's separator
    assert format_lmsys(conversation, final_eos=True) == released + "<｜end▁of▁sentence｜>"


def test_template_format_uses_the_tokenizer_chat_template(smollm2):
    text = format_openthoughts(ROW, "template", smollm2.tokenizer)
    assert text.startswith("<|im_start|>system\nYour role as an assistant")
    assert "<|im_start|>user\nReturn your final response within \\boxed{}. What is 2+3?<|im_end|>" in text
    assert "<|im_start|>assistant\n<think>\nOkay. Wait, 5.\n</think>\nIt is \\boxed{5}.<|im_end|>" in text
    chat = format_lmsys([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
                        "template", smollm2.tokenizer)
    assert "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>" in chat
