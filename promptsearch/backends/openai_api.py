"""Any OpenAI-compatible server through the `openai` package: OpenAI itself, vLLM,
llama.cpp's server, `transformers serve`, ...

    openai:<model>                       chat completions (the default)
    openai:<model>,api=completions       legacy completions: log-probabilities via echo where
                                         the server returns them (vLLM does)
    openai:<model>,base_url=http://h:8000/v1,scoring=generate

`scoring` says how label tasks are scored: `logprobs` (chat: the first answer token's top
log-probabilities, evaluation/first_token.py; completions: each label's log-likelihood by
echo), `generate` (an answer generated and parsed), or `auto` (the default: the server is
asked once, and one that returns no log-probabilities is scored by generation, with one line
saying so). `logprobs=auto|on|off` is the older spelling of the same for api=completions.

Retries are tenacity's (exponential backoff with jitter on 429, 5xx, timeouts and dropped
connections, a bounded number of tries); the SDK's own retries are off so the two never
multiply. 400/401/403/404 fail at once with one clear line. Requests run `concurrency` at a
time and each answer is handed back as it arrives, so the cache keeps it even if a later
request fails. The API key is read from settings only and never leaves the client.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from promptsearch.backends.base import (
    Backend,
    Capabilities,
    FirstTokenRequest,
    FirstTokenResult,
    GenRequest,
    GenResult,
    LoglikRequest,
    LoglikResult,
    Prompt,
    SoftPrompt,
    prompt_segments,
)
from promptsearch.errors import PromptSearchError

log = logging.getLogger("promptsearch.openai")
OPENAI_URL = "https://api.openai.com/v1"
OnResult = Callable[[int, object], None]
SCORINGS = ("auto", "logprobs", "generate")


def clean_url(url: str) -> str:
    """The URL without user:password@, query or fragment, for identities and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _is_transient(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes timeouts and dropped connections
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


class OpenAIBackend(Backend):
    kind = "openai"

    def __init__(
        self,
        model: str,
        api: str = "chat",
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        max_tries: int = 6,
        retry_max_wait: float = 30.0,
        timeout: float = 120.0,
        logprobs: str = "auto",
        prices_path=None,
        scoring: str = "auto",
    ):
        if api not in ("chat", "completions"):
            raise PromptSearchError(f"openai:{model}: api={api!r} must be chat or completions.")
        if logprobs not in ("auto", "on", "off"):
            raise PromptSearchError(f"openai:{model}: logprobs={logprobs!r} must be auto, on or off.")
        if scoring not in SCORINGS:
            raise PromptSearchError(f"openai:{model}: scoring={scoring!r} must be auto, logprobs or generate.")
        if api == "completions" and scoring != "auto":  # the same choice, as the completions API makes it
            logprobs = "on" if scoring == "logprobs" else "off"
        if concurrency < 1 or max_tries < 1:
            raise PromptSearchError("--concurrency and PROMPTSEARCH_MAX_TRIES must be at least 1.")
        url = (base_url or OPENAI_URL).strip()
        if not re.match(r"^https?://[^/\s]+", url):
            raise PromptSearchError(
                f"Base URL {url!r} is not an http(s) URL; use e.g. --base-url http://127.0.0.1:8000/v1."
            )
        self.model = model
        self.api = api
        self.base_url = url
        self.where = clean_url(url)
        self.official = self.where.startswith(OPENAI_URL)
        if not api_key and self.official:
            raise PromptSearchError(
                f"Model openai:{model} needs OPENAI_API_KEY (environment or .env); for a server of your own "
                "(vLLM, llama.cpp, transformers serve) pass --base-url http://host:port/v1."
            )
        self._key = api_key or "no-key"  # servers of one's own usually ignore it
        self.concurrency = concurrency
        self.max_tries = max_tries
        self.retry_max_wait = retry_max_wait
        self.timeout = timeout
        self.logprobs = logprobs
        self.scoring = scoring
        self.model_id = f"openai:{model}"
        from promptsearch.pricing import price_for

        self.price = price_for(model, prices_path)
        self._client_obj = None
        self._abort = threading.Event()
        self._answered = 0  # requests answered by the server in this process
        self._can_ll: bool | None = None
        self._can_ft: bool | None = None

    def __repr__(self) -> str:  # never the key
        return f"OpenAIBackend({self.model!r}, api={self.api!r}, base_url={self.where!r})"

    def identity(self) -> dict[str, str]:
        return {"kind": self.kind, "model": self.model_id, "api": self.api, "server": self.where}

    @property
    def _client(self):
        if self._client_obj is None:
            import openai

            self._client_obj = openai.OpenAI(
                api_key=self._key, base_url=self.base_url, max_retries=0, timeout=self.timeout
            )
        return self._client_obj

    # --- capabilities ---------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        """Chat completions cannot score a given continuation (`logprobs=off` neither);
        completions with echo can, where the server returns prompt log-probabilities, which
        `probe_loglikelihood` asks once (`logprobs=on` asserts it)."""
        chat = self.api == "chat"
        ll = False if chat or self.logprobs == "off" else True if self.logprobs == "on" else None
        ft = False if not chat or self.scoring == "generate" else True if self.scoring == "logprobs" else None
        return Capabilities(loglikelihood=ll, generate=True, streaming=True, chat=chat, first_token=ft)

    @property
    def can_first_token(self) -> bool:
        if self._can_ft is None:
            self._can_ft = self.probe_first_token()
        return self._can_ft

    def planned_first_token(self) -> bool:
        return self.api == "chat" and self.scoring != "generate"

    def probe_first_token(self) -> bool:
        """Whether the server returns the top log-probabilities of a chat answer's first token
        (`scoring=auto`: asked once per server and model; the cache keeps the answer). A server
        that ignores `logprobs` (transformers serve does) is scored by generation, and one line
        says so."""
        if self.api != "chat" or self.scoring == "generate":
            return False
        if self.scoring == "logprobs":
            return True
        import openai

        try:
            got = self._first_token_one(FirstTokenRequest("Is the sky blue? Answer yes or no.", 5), probing=True)
        except PromptSearchError as e:
            cause = e.__cause__
            refused = isinstance(cause, openai.APIStatusError) and cause.status_code in (400, 422)
            if not (refused and "logprob" in self._detail(cause).lower()):
                raise  # a wrong model name, say: the error it is
            got = None  # the server refuses logprobs
        if got is not None and got.top:
            return True
        log.warning(
            "%s returns no log-probabilities for chat answers (it ignores `logprobs`): label tasks on %s are "
            "scored by generating and parsing answers; openai:%s,scoring=generate skips this check.",
            self.where,
            self.model_id,
            self.model,
        )
        return False

    @property
    def can_loglikelihood(self) -> bool:
        if self._can_ll is None:
            self._can_ll = self.probe_loglikelihood()
        return self._can_ll

    def planned_loglikelihood(self) -> bool:
        """The guess a dry run makes without asking the server."""
        return self.api == "completions" and self.logprobs != "off"

    def probe_loglikelihood(self) -> bool:
        """Whether the server returns prompt log-probabilities (completions with echo).
        Chat completions cannot score a given continuation, so chat models classify by
        generating and parsing the answer."""
        if self.api == "chat" or self.logprobs == "off":
            return False
        if self.logprobs == "on":
            return True
        import openai

        try:
            resp = self._request(
                lambda: self._client.completions.create(
                    model=self.model,
                    prompt="The capital of France is Paris",
                    max_tokens=1,
                    temperature=0,
                    echo=True,
                    logprobs=1,
                )
            )
        except PromptSearchError as e:
            cause = e.__cause__
            if isinstance(cause, openai.APIStatusError) and cause.status_code in (400, 422):
                return False  # the server refuses echo/logprobs: generate and parse instead
            raise
        lp = resp.choices[0].logprobs if resp.choices else None
        values = [v for v in (lp.token_logprobs or [])] if lp is not None else []
        return sum(v is not None for v in values) >= 2

    # --- requests -------------------------------------------------------------------------
    def _request(self, fn):
        """One request with tenacity retries; errors become one clear line."""
        import openai
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

        def stop_on_abort(_state) -> bool:
            return self._abort.is_set()

        retrying = Retrying(
            stop=stop_after_attempt(self.max_tries) | stop_on_abort,
            wait=wait_random_exponential(multiplier=0.5, max=self.retry_max_wait),
            retry=retry_if_exception(_is_transient),
            reraise=True,
            before_sleep=self._note_retry,
        )
        try:
            out = retrying(fn)
        except openai.APIStatusError as e:
            raise PromptSearchError(self._status_message(e)) from e
        except openai.APIConnectionError as e:
            raise PromptSearchError(self._gone_message(e)) from e
        self._answered += 1
        return out

    def _note_retry(self, state) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        # Warn only once the server has answered before: a server never reached gets one
        # line at the end ("Cannot reach ...") rather than a line per try.
        level = logging.WARNING if self._answered else logging.DEBUG
        log.log(
            level,
            "%s: %s; try %d of %d failed, retrying in %.1f s",
            self.where,
            self._describe(exc),
            state.attempt_number,
            self.max_tries,
            wait,
        )

    def _describe(self, exc: BaseException | None) -> str:
        import openai

        if exc is None:
            return "no answer"
        if isinstance(exc, openai.APITimeoutError):
            return f"timed out after {self.timeout:.0f} s"
        if isinstance(exc, openai.APIStatusError):
            return f"HTTP {exc.status_code} {self._detail(exc)}".strip()
        cause = exc.__cause__ or exc.__context__
        text = str(cause or exc)
        if "refused" in text.lower():
            return "connection refused"
        return self._redact(text.splitlines()[0] if text else type(exc).__name__)[:160]

    def _redact(self, text: str) -> str:
        if self._key and self._key != "no-key":
            text = text.replace(self._key, "[key]")
        return re.sub(r"sk-[A-Za-z0-9_\-*]{6,}", "sk-[redacted]", text)

    def _detail(self, exc) -> str:
        body = getattr(exc, "body", None)
        msg = None
        if isinstance(body, dict):
            err = body.get("error", body)
            msg = err.get("message") if isinstance(err, dict) else err
            msg = msg or body.get("detail")
        text = str(msg or getattr(exc, "message", "") or "")
        return self._redact(" ".join(text.split()))[:200]

    def _status_message(self, e) -> str:
        code, detail = e.status_code, self._detail(e)
        where = f"The server at {self.where}"
        if code == 401:
            return f"{where} rejected the API key (401 Unauthorized): set OPENAI_API_KEY to a valid key for it."
        if code == 403:
            return f"{where} refused access to model '{self.model}' (403 Forbidden): {detail or 'check the key'}."
        if code == 404:
            endpoint = "chat/completions" if self.api == "chat" else "completions"
            return (
                f"{where} has no model '{self.model}' or no /{endpoint}"
                f" endpoint (404): {detail or 'not found'}; check --model and --base-url."
            )
        if code in (408, 409, 429) or code >= 500:
            return (
                f"{where} kept failing ({self._describe(e)}) after {self.max_tries} tries. "
                "Answers received so far are cached; run the same command again to resume."
            )
        return f"{where} rejected a request for model '{self.model}' (HTTP {code}): {detail or 'bad request'}."

    def _gone_message(self, e) -> str:
        what = self._describe(e)
        if self._answered == 0:
            return (
                f"Cannot reach {self.where} ({what}) after {self.max_tries} tries: is the server running, "
                "and is --base-url (or OPENAI_BASE_URL) right?"
            )
        return (
            f"{self.where} stopped answering ({what}) after {self.max_tries} tries. "
            "Answers received so far are cached; run the same command again to resume."
        )

    def _map(self, fn, items: Sequence, on_result: OnResult | None) -> list:
        """fn over items, `concurrency` at a time; on_result(i, answer) in this thread as each
        lands. The first failure cancels what has not started and stops retries in flight."""
        self._abort.clear()
        results: list = [None] * len(items)
        if self.concurrency == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                results[i] = fn(item)
                if on_result:
                    on_result(i, results[i])
            return results
        error: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)))
        try:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for fut in as_completed(futures):
                if fut.cancelled():
                    continue
                exc = fut.exception()
                if exc is not None:
                    if error is None:
                        error = exc
                        self._abort.set()
                        for f in futures:
                            f.cancel()
                    continue
                i = futures[fut]
                results[i] = fut.result()
                if on_result:
                    on_result(i, results[i])
        except BaseException:  # Ctrl-C: stop retries, start nothing new, drop open connections
            self._abort.set()
            pool.shutdown(wait=False, cancel_futures=True)
            client, self._client_obj = self._client_obj, None
            if client is not None:
                client.close()  # requests in flight fail now instead of holding the exit
            raise
        pool.shutdown(wait=True)
        if error is not None:
            raise error
        return results

    def _text(self, prompt: Prompt) -> str:
        parts = []
        for seg in prompt_segments(prompt):
            if not isinstance(seg, str):
                raise PromptSearchError(
                    f"{self.model_id} takes text prompts; token-id triggers (AutoPrompt) need a local model (hf:...)."
                )
            parts.append(seg)
        return "".join(parts)

    # --- the Backend contract ---------------------------------------------------------------
    def loglikelihood(
        self,
        requests: Sequence[LoglikRequest],
        soft_prompt: SoftPrompt | None = None,
        on_result: OnResult | None = None,
    ) -> list[LoglikResult]:
        if soft_prompt is not None:
            raise PromptSearchError(f"{self.model_id} cannot take soft prompts; they need a local model (hf:...).")
        if self.api == "chat" or self.logprobs == "off":  # otherwise the cache wrapper has asked the server once
            raise PromptSearchError(
                f"{self.model_id} at {self.where} returns no log-probabilities; "
                "it scores by generating answers instead."
            )
        texts = [(self._text(r.context), r.continuation) for r in requests]
        return self._map(self._loglik_one, texts, on_result)

    def _loglik_one(self, item: tuple[str, str]) -> LoglikResult:
        context, cont = item
        resp = self._request(
            lambda: self._client.completions.create(
                model=self.model, prompt=context + cont, max_tokens=1, temperature=0, echo=True, logprobs=1
            )
        )
        lp = resp.choices[0].logprobs if resp.choices else None
        if lp is None or not lp.token_logprobs or not lp.text_offset or not lp.tokens:
            raise PromptSearchError(
                f"{self.where} returned no log-probabilities for a completions request with "
                f"echo; use openai:{self.model},logprobs=off to score by generation."
            )
        end = len(context) + len(cont)
        total, greedy, n = 0.0, True, 0
        tops = lp.top_logprobs or []
        for i, (tok, off) in enumerate(zip(lp.tokens, lp.text_offset)):
            if off >= end:
                break  # the generated token
            if off + len(tok) <= len(context) or lp.token_logprobs[i] is None:
                continue
            total += lp.token_logprobs[i]
            n += 1
            if i < len(tops) and tops[i]:
                greedy = greedy and max(tops[i], key=tops[i].get) == tok
        if n == 0:
            raise PromptSearchError(
                f"{self.where} returned log-probabilities that do not cover the continuation {cont!r}."
            )
        prompt_tokens, completion_tokens = _usage(resp, context + cont)
        return LoglikResult(total, greedy, prompt_tokens + completion_tokens, completion_tokens)

    def first_token(self, requests: Sequence[FirstTokenRequest], on_result: OnResult | None = None):
        if self.api != "chat" or self.scoring == "generate":  # otherwise the cache wrapper has asked the server once
            raise PromptSearchError(
                f"{self.model_id} is set to score by generating answers (api={self.api}, scoring={self.scoring})."
            )
        return self._map(self._first_token_one, list(requests), on_result)

    def _first_token_one(self, r: FirstTokenRequest, probing: bool = False) -> FirstTokenResult | None:
        """One chat answer token with its top log-probabilities; None when the server
        answered without them while `probing` (otherwise that is an error)."""
        text = self._text(r.prompt)
        resp = self._request(
            lambda: self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": text}],
                temperature=0,
                logprobs=True,
                top_logprobs=r.top_k,
                **self._max_tokens(1),
            )
        )
        top = _top_logprobs(resp)
        if top is None:
            if probing:
                return None
            raise PromptSearchError(
                f"{self.where} returned no log-probabilities for a chat answer; "
                f"use openai:{self.model},scoring=generate to score by generation."
            )
        prompt_tokens, completion_tokens = _usage(resp, text)
        return FirstTokenResult(top, prompt_tokens + completion_tokens, completion_tokens)

    def _max_tokens(self, n: int) -> dict:
        """OpenAI's own API takes max_completion_tokens; other servers (llama.cpp's among them)
        read max_tokens, which is sent beside it."""
        if self.official:
            return {"max_completion_tokens": n}
        return {"max_completion_tokens": n, "extra_body": {"max_tokens": n}}

    def generate(
        self, requests: Sequence[GenRequest], soft_prompt: SoftPrompt | None = None, on_result: OnResult | None = None
    ) -> list[GenResult]:
        if soft_prompt is not None:
            raise PromptSearchError(f"{self.model_id} cannot take soft prompts; they need a local model (hf:...).")
        items = [(self._text(r.prompt), r) for r in requests]
        return self._map(self._generate_one, items, on_result)

    def _generate_one(self, item: tuple[str, GenRequest]) -> GenResult:
        text, r = item
        kwargs: dict = {"temperature": r.temperature, "top_p": r.top_p}
        if r.temperature > 0:  # each self-consistency sample its own seed, so samples differ yet repeat
            kwargs["seed"] = r.seed * 1_000_003 + r.sample_index
        if r.stop:
            kwargs["stop"] = list(r.stop)[:4]  # OpenAI takes at most 4; all are applied below
        if self.api == "chat":
            resp = self._request(
                lambda: self._client.chat.completions.create(
                    model=self.model,
                    messages=[{"role": "user", "content": text}],
                    **self._max_tokens(r.max_new_tokens),
                    **kwargs,
                )
            )
            out = (resp.choices[0].message.content or "") if resp.choices else ""
        else:
            resp = self._request(
                lambda: self._client.completions.create(
                    model=self.model, prompt=text, max_tokens=r.max_new_tokens, **kwargs
                )
            )
            out = resp.choices[0].text if resp.choices else ""
        for s in r.stop:  # servers differ in whether they honour stop: apply it here too
            if s and s in out:
                out = out[: out.index(s)]
        prompt_tokens, completion_tokens = _usage(resp, text, out)
        return GenResult(out, prompt_tokens + completion_tokens, completion_tokens)


def _top_logprobs(resp) -> list | None:
    """[token, log-probability] pairs of the first answer token, from OpenAI's chat shape
    (`logprobs.content[0].top_logprobs`) or the completions shape some servers return for
    chat (`logprobs.top_logprobs[0]`, a dict); None when there are none."""
    choice = resp.choices[0] if resp.choices else None
    lp = choice.logprobs if choice is not None else None
    if lp is None:
        return None
    content = lp.content or []
    if content and content[0].top_logprobs:
        return [[t.token, float(t.logprob)] for t in content[0].top_logprobs]
    legacy = (lp.model_extra or {}).get("top_logprobs") or []
    if legacy and isinstance(legacy[0], dict) and legacy[0]:
        return [[tok, float(v)] for tok, v in legacy[0].items()]
    return None


def _usage(resp, prompt: str, out: str = "x") -> tuple[int, int]:
    """(prompt tokens, completion tokens) as the server reports them; estimated at ~4
    characters a token where it reports none."""
    u = getattr(resp, "usage", None)
    if u is not None and u.prompt_tokens is not None:
        return int(u.prompt_tokens), int(u.completion_tokens or 0)
    return max(1, len(prompt) // 4), max(1, len(out) // 4)


def _parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    model, *opts = [p.strip() for p in spec.split(",")]
    options = {}
    for o in opts:
        key, sep, value = o.partition("=")
        if not sep or key not in ("api", "base_url", "logprobs", "scoring"):
            raise PromptSearchError(
                f"openai:{spec}: option {o!r} must be api=chat|completions, base_url=URL, "
                "scoring=auto|logprobs|generate or logprobs=auto|on|off."
            )
        options[key] = value
    return model, options


def load_openai(spec: str, settings) -> OpenAIBackend:
    """`openai:<model>[,api=chat|completions][,base_url=URL][,scoring=auto|logprobs|generate]`."""
    model, opts = _parse_spec(spec)
    if not model:
        raise PromptSearchError("Model 'openai:' needs a model name, e.g. openai:gpt-4o-mini.")
    return OpenAIBackend(
        model,
        api=opts.get("api", "chat"),
        base_url=opts.get("base_url") or settings.openai_base_url,
        api_key=settings.openai_api_key,
        concurrency=settings.concurrency,
        max_tries=settings.max_tries,
        retry_max_wait=settings.retry_max_wait,
        timeout=settings.request_timeout,
        logprobs=opts.get("logprobs", "auto"),
        prices_path=settings.prices_path,
        scoring=opts.get("scoring", "auto"),
    )
