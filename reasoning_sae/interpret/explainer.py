"""The explainer: any OpenAI-compatible Chat Completions endpoint, called with httpx (retries with backoff on
connection errors, timeouts, 429 and 5xx; every failure a one-line UserError naming the fix). With a ReplyCache every
answer it accepts is kept on disk, keyed by the request, so a run the explainer stops sends only the missing requests
when it is run again."""

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import tenacity

from reasoning_sae.errors import UserError

log = logging.getLogger(__name__)
ENV_BASE_URL, ENV_MODEL, DEFAULT_MODEL = "OPENAI_BASE_URL", "REASONING_SAE_EXPLAINER_MODEL", "gpt-4o"
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
T = TypeVar("T")


def endpoint(cfg: Mapping) -> tuple[str | None, str]:
    """(base URL, model) from the config, falling back to $OPENAI_BASE_URL and $REASONING_SAE_EXPLAINER_MODEL."""
    base_url = cfg.get("base_url") or os.environ.get(ENV_BASE_URL) or None
    return base_url, cfg.get("model") or os.environ.get(ENV_MODEL) or DEFAULT_MODEL


def with_backoff(retries: int, backoff: float, retry: tenacity.retry_base,
                 give_up: Callable[[tenacity.RetryCallState], object]) -> tenacity.Retrying:
    """Call up to `retries` more times while `retry` says so, waiting backoff * 2**attempt seconds before retry
    number attempt + 1; when the retries are spent, the call returns (or raises) what `give_up` does with the last
    attempt. Exceptions `retry` does not name propagate at once."""
    return tenacity.Retrying(stop=tenacity.stop_after_attempt(retries + 1),
                             wait=tenacity.wait_exponential(multiplier=backoff, exp_base=2),
                             retry=retry, retry_error_callback=give_up)


def post_with_retries(url: str, body: dict, api_key: str | None, timeout: float, retries: int, backoff: float,
                      what: str, fix: str) -> httpx.Response:
    """POST a chat-completions request, retrying connection errors and RETRY_STATUS answers with exponential
    backoff; the last answer is returned whatever its status (callers word their own HTTP errors)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def give_up(state: tenacity.RetryCallState) -> httpx.Response:
        if state.outcome.failed:
            err = state.outcome.exception()
            raise UserError(f"cannot reach {what} ({type(err).__name__}: {snippet(err)}): {fix}") from None
        return state.outcome.result()

    retry = (tenacity.retry_if_exception_type(httpx.TransportError)
             | tenacity.retry_if_result(lambda response: response.status_code in RETRY_STATUS))
    with httpx.Client(timeout=timeout) as client:
        return with_backoff(retries, backoff, retry, give_up)(client.post, url, json=body, headers=headers)


def snippet(text: object, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters (for one-line error messages)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def error_detail(response: httpx.Response) -> str:
    """What an error answer says: the OpenAI error message, else its body, else the HTTP reason, on one line."""
    try:
        detail = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = response.text
    return snippet(detail) or response.reason_phrase


def chat_content(response: httpx.Response) -> str | None:
    """The assistant message of a Chat Completions answer, None when the body is not one."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


class ReplyCache:
    """Accepted answers, one JSON file per request ({"request", "reply"}) named by the sha256 of the request body
    (model, messages, temperature, max_tokens; not the URL or the key): a rerun sends only requests not answered yet.
    Delete the folder to ask again."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _path(self, body: Mapping) -> Path:
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return self.folder / f"{key[:32]}.json"

    def get(self, body: Mapping) -> str | None:
        path = self._path(body)
        try:
            return json.loads(path.read_text())["reply"] if path.is_file() else None
        except (ValueError, KeyError, TypeError):  # a damaged entry is asked again
            return None

    def put(self, body: Mapping, reply: str) -> None:
        path = self._path(body)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"request": body, "reply": reply}, indent=1))
        tmp.replace(path)


@dataclass(frozen=True)
class Explainer:
    """POST {base_url}/chat/completions with a bearer key; retries transport errors, 429 and 5xx with backoff."""

    base_url: str
    model: str = DEFAULT_MODEL
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int | None = None
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 2.0
    cache: ReplyCache | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_config(cls, cfg: Mapping) -> "Explainer":
        """From the `autointerp.explainer` config; the key is read from the environment variable it names."""
        base_url, model = endpoint(cfg)
        if not base_url:
            raise UserError(f"no explainer endpoint: set autointerp.explainer.base_url=... or ${ENV_BASE_URL} to an "
                            "OpenAI-compatible /v1 URL (e.g. https://api.openai.com/v1, or http://localhost:8000/v1 "
                            "for a local vLLM server)")
        key_env = cfg.get("api_key_env") or "OPENAI_API_KEY"
        return cls(base_url=base_url, model=model, api_key=os.environ.get(key_env) or None, api_key_env=key_env,
                   temperature=float(cfg.get("temperature", 0.0)), max_tokens=cfg.get("max_tokens"),
                   timeout=float(cfg.get("timeout", 120.0)), retries=int(cfg.get("retries", 3)),
                   backoff=float(cfg.get("backoff", 2.0)))

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/chat/completions"

    def with_cache(self, folder: Path) -> "Explainer":
        """This explainer, keeping every answer it accepts under `folder` (a ReplyCache)."""
        return dataclasses.replace(self, cache=ReplyCache(folder))

    def chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The assistant message's text for one request (from the cache when there is one and it has the answer)."""
        return self.ask(messages, lambda text: text)

    def ask(self, messages: Sequence[Mapping[str, str]], parse: Callable[[str], T]) -> T:
        """`parse` of the answer to one request. An answer `parse` rejects (a UserError) is asked for again, up to
        `retries` times, then its error stands; an accepted answer is cached, and a cached one is not asked again."""
        body = {"model": self.model, "messages": list(messages), "temperature": self.temperature}
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        cached = self.cache.get(body) if self.cache else None
        if cached is not None:
            try:
                return parse(cached)
            except UserError:
                log.warning("a cached explainer answer is no longer accepted: asking again")
        last = max(self.retries, 0)
        for attempt in range(last + 1):
            text = self._content(self._post(body))
            try:
                value = parse(text)
            except UserError as err:
                if attempt == last:
                    raise
                log.warning("explainer answer not usable (%s): asking again (%d/%d)", err, attempt + 1, self.retries)
                continue
            if self.cache:
                self.cache.put(body, text)
            return value

    def probe(self) -> None:
        """One one-token request, so that a wrong URL, key or model fails before hours of steered generation."""
        self._content(self._post({"model": self.model, "max_tokens": 1, "temperature": 0.0,
                                  "messages": [{"role": "user", "content": "Reply with OK."}]}), probe=True)

    def _post(self, body: dict) -> httpx.Response:
        response = post_with_retries(self.url, body, self.api_key, self.timeout, self.retries, self.backoff,
                                     f"the explainer at {self.url}", f"check explainer.base_url, that the server "
                                     f"is up, and explainer.timeout={self.timeout:g} s")
        if response.is_error:
            raise UserError(self._http_error(response))
        return response

    def _http_error(self, response: httpx.Response) -> str:
        status = response.status_code
        fix = ("set a valid API key in $" + self.api_key_env if status in (401, 403)
               else "check explainer.base_url (usually ends in /v1) and explainer.model" if status == 404
               else f"still failing after {self.retries} retries: wait, or raise explainer.retries" if status == 429
               else f"server error after {self.retries} retries: check the server" if status >= 500
               else "the server rejected the request: check explainer.model and explainer.temperature")
        return f"explainer at {self.url} answered HTTP {status} ({error_detail(response)}): {fix}"

    def _content(self, response: httpx.Response, probe: bool = False) -> str:
        content = chat_content(response)
        if probe and content is not None:  # one token may well be empty text
            return content
        if content is None or not content.strip():
            raise UserError(f"explainer at {self.url} sent no Chat Completions message ({snippet(response.text)}): "
                            "point explainer.base_url at an OpenAI-compatible /v1 endpoint")
        return content
