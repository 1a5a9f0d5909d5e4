"""The released code's LLM answer verifier (its README; the paper names none): Llama-3.3-70B-Instruct through an
OpenAI-compatible Chat Completions endpoint (the released code: OpenRouter), asked with the released prompts
(`verifier_prompts`). Called with httpx; connection errors, timeouts, 429 and 5xx are retried with backoff, and so is
a reply whose verdict cannot be parsed. Verdicts are cached per (question, reference, answer) for the process's life."""

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import httpx
import tenacity

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.verifier_prompts import GPQA_CHOICE, GPQA_QUESTION, MATH_EQUIVALENCE
from reasoning_sae.interpret.explainer import (  # one retry rule and one reading of answers for both
    RETRY_STATUS, chat_content, error_detail, post_with_retries, snippet, with_backoff)

log = logging.getLogger(__name__)
OPENROUTER = "https://openrouter.ai/api/v1"
RELEASED_MODEL = "meta-llama/llama-3.3-70b-instruct"
ENV_MODEL = "PROCESSOR"  # the released code's variable naming the verifier model (and switching the verifier on)
_INTEGER = re.compile(r"(?<![\w.])-?\d+(?!\w|\.\d)")
_LETTER = re.compile(r"\b([A-D])\b")
_DECORATION = "*_`'\"()[]{}.:;, \t"


@dataclass(frozen=True)
class VerifierConfig:
    """Where and how to ask the verifier (`benchmark.verifier`); the API key itself is read from the environment."""

    base_url: str | None = OPENROUTER
    """OpenAI-compatible API root: requests go to {base_url}/chat/completions (the released code: OpenRouter)."""
    model: str | None = None
    """The verifier model; null: $PROCESSOR as in the released code, else meta-llama/llama-3.3-70b-instruct."""
    api_key_env: str | None = "OPENROUTER_API_KEY"
    """Environment variable holding the API key (null: an endpoint without one, e.g. a local vLLM server)."""
    temperature: float = 0.5
    """Sampling temperature of the verifier (the released code: 0.5)."""
    max_tokens: int = 1024
    """Cap on each reply's tokens (the released code: 1024)."""
    timeout: float = 120.0
    """Seconds per request."""
    retries: int = 3
    """Retries after a connection error, timeout, 429, 5xx or an unparseable verdict."""
    backoff: float = 1.0
    """Wait backoff * 2^attempt seconds before each retry."""

    @classmethod
    def from_mapping(cls, values: Mapping | None) -> "VerifierConfig":
        """From `benchmark.verifier` (or lm-eval metadata); unknown keys are a UserError."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown benchmark.verifier setting(s) {unknown}: allowed are {sorted(known)}")
        return cls(**values)

    @property
    def resolved_model(self) -> str:
        return self.model or os.environ.get(ENV_MODEL) or RELEASED_MODEL

    @property
    def url(self) -> str:
        return f"{str(self.base_url).rstrip('/')}/chat/completions"

    def check(self) -> None:
        """Fail in one line unless the endpoint settings are complete (run before any model loads)."""
        if not self.base_url or not str(self.base_url).startswith(("http://", "https://")):
            raise UserError(f"benchmark.grading=llm needs an endpoint: set benchmark.verifier.base_url to an "
                            f"OpenAI-compatible /v1 URL (got {self.base_url!r}; the released code: {OPENROUTER})")
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise UserError(f"benchmark.grading=llm needs an API key: set ${self.api_key_env}, or "
                            "benchmark.verifier.api_key_env=null for an endpoint without one")
        if self.retries < 0 or self.timeout <= 0 or self.max_tokens < 1:
            raise UserError("benchmark.verifier: retries must be >= 0, timeout > 0 and max_tokens >= 1")

    def key(self) -> dict:
        """What changes the verdicts (for an evaluation cell's key): endpoint, model and sampling; never the key."""
        return {"base_url": self.base_url, "model": self.resolved_model, "temperature": self.temperature,
                "max_tokens": self.max_tokens}

    def as_dict(self) -> dict:
        return asdict(self)


def _only(values: list[str]) -> str | None:
    """The single distinct value of a list, else None."""
    return values[0] if len(set(values)) == 1 else None


def parse_index(reply: str) -> int | None:
    """The option index of a MATH verdict ("1", "-1", "**1**", "1\\n(reason)", "The answer is 1."), else None."""
    lines = [line.strip(_DECORATION) for line in reply.strip().splitlines() if line.strip(_DECORATION)]
    if lines and re.fullmatch(r"-?\d+", lines[0]):
        return int(lines[0])
    found = _only(_INTEGER.findall(reply))
    return int(found) if found is not None else None


def parse_choice(reply: str) -> str | None:
    """The letter of a GPQA verdict ("B", "(B)", "Answer: B"), "" for "-1" (no choice), else None."""
    lines = [line.strip(_DECORATION) for line in reply.strip().splitlines() if line.strip(_DECORATION)]
    first = re.sub(r"(?i)^answer\s*:?\s*", "", lines[0]).strip(_DECORATION) if lines else ""
    if first.upper() in ("A", "B", "C", "D"):
        return first.upper()
    if first == "-1":
        return ""
    return _only(_LETTER.findall(reply))


class Verifier:
    """Asks the verifier LLM; `equivalent` and `choice` return None when no verdict could be parsed after retries
    (the released code then keeps the extracted answer as it is)."""

    def __init__(self, config: VerifierConfig):
        config.check()
        self.config = config
        self._api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
        self._verdicts: dict[tuple, object] = {}

    def equivalent(self, question: str, reference: str, answer: str) -> bool | None:
        """Whether `answer` is equivalent to `reference` (the released MATH prompt with the one option)."""
        options = f"['{reference}']"  # the released code's rendering of its option list
        prompt = MATH_EQUIVALENCE % {"expression1": options, "expression2": answer}
        return self._verdict(("math", question, reference, answer), prompt, _index_verdict)

    def choice(self, doc: Mapping, answer: str) -> str | None:
        """The letter A-D the attempt picked, "" when it picked none, None when no verdict could be parsed."""
        question = GPQA_QUESTION.format(**{k: doc[k] for k in ("Question", "choice1", "choice2", "choice3", "choice4")})
        prompt = GPQA_CHOICE % {"expression1": question, "expression2": answer}
        return self._verdict(("gpqa", question, str(doc.get("answer")), answer), prompt, parse_choice)

    def _verdict(self, key: tuple, prompt: str, parse: Callable[[str], object]):
        if key not in self._verdicts:
            self._verdicts[key] = self._ask(prompt, parse)
        return self._verdicts[key]

    def _ask(self, prompt: str, parse: Callable[[str], object]):
        body = {"model": self.config.resolved_model, "messages": [{"role": "user", "content": prompt}],
                "temperature": self.config.temperature, "max_tokens": self.config.max_tokens}

        def ask_once() -> tuple[httpx.Response, str | None, object]:
            response = self._post(body)
            reply = chat_content(response)
            return response, reply, None if reply is None else parse(reply)

        no_verdict = tenacity.retry_if_result(lambda asked: asked[2] is None)
        response, reply, verdict = with_backoff(self.config.retries, self.config.backoff, no_verdict,
                                                lambda state: state.outcome.result())(ask_once)
        if verdict is not None:
            return verdict
        if reply is None:
            raise UserError(f"verifier at {self.config.url} sent no Chat Completions message "
                            f"({snippet(response.text)}): point benchmark.verifier.base_url at an OpenAI-compatible "
                            "/v1 endpoint")
        log.warning("verifier %s gave no parseable verdict in %d tries (last reply %r): keeping the extracted "
                    "answer as it is, as the released code does", self.config.resolved_model,
                    self.config.retries + 1, snippet(reply))
        return None

    def _post(self, body: dict) -> httpx.Response:
        cfg = self.config
        response = post_with_retries(cfg.url, body, self._api_key, cfg.timeout, cfg.retries, cfg.backoff,
                                     f"the verifier at {cfg.url}",
                                     "check benchmark.verifier.base_url and that the server is up")
        if response.is_error:
            raise UserError(self._http_error(response))
        return response

    def _http_error(self, response: httpx.Response) -> str:
        status, env = response.status_code, self.config.api_key_env
        fix = (f"set a valid API key in ${env}" if status in (401, 403) and env
               else "check benchmark.verifier.base_url (usually ends in /v1) and benchmark.verifier.model"
               if status in (401, 403, 404)
               else f"still failing after {self.config.retries} retries: check the server, or raise "
                    f"benchmark.verifier.retries" if status in RETRY_STATUS
               else "the server rejected the request: check benchmark.verifier.model and its settings")
        return f"verifier at {self.config.url} answered HTTP {status} ({error_detail(response)}): {fix}"



def _index_verdict(reply: str) -> bool | None:
    """1: equivalent to the (only) option; -1: not; anything else: unparseable."""
    return {1: True, -1: False}.get(parse_index(reply))


@lru_cache(maxsize=None)
def verifier_for(config: VerifierConfig) -> Verifier:
    """One verifier (and verdict cache) per setting for the life of the process: every cell of a run shares it."""
    return Verifier(config)
