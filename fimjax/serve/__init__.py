"""An HTTP server for editors and scripts: fill holes, generate workflows, score text.

  python -m fimjax.serve --model PATH [--port 8000] [--host 127.0.0.1] [--step N]
                         [--max_batch 8] [--max_request_bytes 1000000]

(the command: fimjax/cli/serve.py; `Server` here runs in any process, bench/serve_bench.py).

PATH: a run's workdir, its checkpoints/ folder (a copy will do) or one step folder
(`fimjax.api.load`). Endpoints, JSON in and out (docs/serve.md):

  POST /infill    {"text": "..<FILL>..", "temperature", "top_k", "top_p", "max_tokens", "seed",
                   "stop"} -> {"text": filled, "batch": requests served together, "queue_ms",
                   "compute_ms"}; options as `Model.infill` (greedy, 128 tokens per hole)
  POST /generate  {"n", "temperature", "top_k", "top_p", "max_tokens", "seed"} -> {"samples"}
  POST /score     {"text"} -> {"tokens": n, "loss": [n + 1 values, the last EOS's], "mean"}
  POST /v1/completions  the OpenAI completions shape editor plug-ins speak: {"prompt", "suffix"
                   (fill-in-the-middle between prompt and suffix when given; else the prompt is
                   continued), "max_tokens" (16), "temperature" (1), "top_p", "stop" (a string
                   or up to 4), "n", "seed", "model" (ignored)} -> {"choices": [{"text",
                   "index", "finish_reason": "stop" | "length"}], "usage", ...}
  GET  /health    -> model path, step, tokenizer id;   GET /stats -> requests and batch sizes

Batching (`fimjax.serve_worker`): concurrent infills with the same sampling settings share
sampler calls, up to --max_batch; /generate and /score run alone. One worker thread makes every
JAX call.

Why the standard library (`http.server.ThreadingHTTPServer`): the model serialises the work in
one thread anyway, so an async framework would buy nothing for a local editor or script; it
adds no dependency. It is not hardened for the open internet: bind it to 127.0.0.1 (default).
"""

import http.server
import json
import math
import threading

from fimjax import api
from fimjax import inference
from fimjax.serve_worker import Job, RequestError, Worker

MAX_N = 64  # samples per /generate request
MAX_TOKENS = 8192
MAX_SEED = 2**31 - 1
DISCARD = 16 << 20  # a refused body up to this size is read before the answer
FLOAT, INT, STR = "a finite number", "an integer", "a string"
NULLSTR, STOPLIST, BOOL = "a string or null", "a string or a list of up to 4 strings", "a boolean"
# Fields per endpoint: (type, default); None = required.
FIELDS = {
  "/infill": {
    "text": (STR, None),
    "temperature": (FLOAT, 0.0),
    "top_k": (INT, 0),
    "top_p": (FLOAT, 1.0),
    "max_tokens": (INT, 128),
    "seed": (INT, -1),
    "stop": (STR, "eom"),
  },
  "/generate": {
    "n": (INT, 1),
    "temperature": (FLOAT, 1.0),
    "top_k": (INT, 0),
    "top_p": (FLOAT, 1.0),
    "max_tokens": (INT, 1024),
    "seed": (INT, 0),
  },
  "/score": {"text": (STR, None)},
  "/v1/completions": {
    "prompt": (STR, None),
    "suffix": (NULLSTR, "absent"),
    "max_tokens": (INT, 16),
    "temperature": (FLOAT, 1.0),
    "top_k": (INT, 0),
    "top_p": (FLOAT, 1.0),
    "stop": (STOPLIST, []),
    "n": (INT, 1),
    "seed": (INT, -1),
    "model": (STR, ""),
    "stream": (BOOL, False),
  },
}


def parse_request(path: str, body: bytes, vocab: int = 1 << 30) -> dict:
  """The checked fields of a request to `path` (defaults filled in); RequestError(400) naming
  the field otherwise. `seed` -1 means none given; `vocab`: the model's (top_k's bound)."""
  try:
    req = json.loads(body.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise RequestError(400, f"bad JSON: {e}; send one JSON object") from None
  if not isinstance(req, dict):
    raise RequestError(400, f"the body is a JSON {type(req).__name__}; send a JSON object")
  fields = FIELDS[path]
  if unknown := sorted(set(req) - set(fields)):
    raise RequestError(400, f"unknown field {unknown[0]!r}: {path} takes {', '.join(fields)}")
  out = {}
  for name, (kind, default) in fields.items():
    if name not in req:
      if default is None:
        raise RequestError(400, f"missing field {name!r}: {path} needs it")
      out[name] = default
      continue
    value = req[name]
    ok = {
      STR: isinstance(value, str),
      NULLSTR: value is None or isinstance(value, str),
      BOOL: isinstance(value, bool),
      STOPLIST: isinstance(value, str)
      or (
        isinstance(value, list) and len(value) <= 4 and all(isinstance(v, str) and v for v in value)
      ),
      INT: isinstance(value, int) and not isinstance(value, bool),
      FLOAT: isinstance(value, (int, float))
      and not isinstance(value, bool)
      and math.isfinite(value),
    }[kind]
    if not ok:
      raise RequestError(400, f"field {name!r}: {json.dumps(value)[:40]} is not {kind}")
    out[name] = value
  if path == "/v1/completions":
    if out["stream"]:
      raise RequestError(400, "field 'stream': streaming is not supported; send stream false")
    out["suffix"] = None if out["suffix"] in (None, "absent") else out["suffix"]
    out["stop"] = [out["stop"]] if isinstance(out["stop"], str) else out["stop"]
  _check_ranges(path, out, vocab)
  return out


def _check_ranges(path: str, r: dict, vocab: int) -> None:
  if path == "/score":
    return
  for name, value, ok, rule in (
    ("max_tokens", r["max_tokens"], r["max_tokens"] <= MAX_TOKENS, f"<= {MAX_TOKENS}"),
    ("top_k", r["top_k"], r["top_k"] <= vocab, f"<= the vocabulary ({vocab})"),
    ("seed", r["seed"], -1 <= r["seed"] <= MAX_SEED, f"in [0, {MAX_SEED}] (-1: none)"),
    ("n", r.get("n", 1), 1 <= r.get("n", 1) <= MAX_N, f"in [1, {MAX_N}]"),
    (
      "stop",
      r.get("stop", "eom"),
      path != "/infill" or r["stop"] in api.STOPS,
      f"one of {api.STOPS}",
    ),
  ):
    if not ok:
      raise RequestError(400, f"field {name!r}: {value!r} must be {rule}")
  try:
    api.sample_config(r["temperature"], r["top_k"], r["top_p"], r["max_tokens"])
  except ValueError as e:  # "temperature=-1: must be >= 0 (0 = greedy)"
    name, _, rest = str(e).partition("=")
    raise RequestError(400, f"field {name!r}: {rest.replace(': ', ' ', 1)}") from None
  if path == "/infill" and not inference.find_holes(r["text"]):
    raise RequestError(400, f"field 'text' has no hole: mark one with {inference.MARKER}")


# -------------------------------------------------------------------------------------- HTTP


class Handler(http.server.BaseHTTPRequestHandler):
  """Parses and checks a request, queues it for the worker, waits, answers JSON."""

  server_version = "fimjax-serve"
  timeout = 60  # a client that stops sending mid-body frees its thread

  def do_GET(self):  # noqa: N802
    self._respond(self._get)

  def do_POST(self):  # noqa: N802
    self._respond(self._post)

  def _get(self) -> dict:
    app = self.server.app
    if self.path == "/health":
      m = app.worker.model
      return {
        "status": "ok",
        "model": m.path,
        "step": m.step,
        "tokenizer": m.tokenizer_id,
        "context": m.model_config.context,
        "max_batch": app.worker.max_batch,
      }
    if self.path == "/stats":
      return app.worker.snapshot()
    raise self._unknown("GET")

  def _post(self) -> dict:
    app = self.server.app
    if self.path not in FIELDS:
      raise self._unknown("POST")
    length = self.headers.get("Content-Length")
    if length is None or not length.isdigit():
      raise RequestError(411, "send the body with a Content-Length header")
    if int(length) > app.max_request_bytes:
      # Read (up to DISCARD): closing a socket with unread data resets it, losing the answer.
      left = min(int(length), DISCARD)
      while left > 0 and (chunk := self.rfile.read(min(left, 1 << 16))):
        left -= len(chunk)
      raise RequestError(
        413,
        f"request of {length} bytes is over the limit of "
        f"{app.max_request_bytes} (--max_request_bytes)",
      )
    vocab = app.worker.model.model_config.vocab_size
    job = Job(self.path, parse_request(self.path, self.rfile.read(int(length)), vocab))
    app.worker.submit(job)
    job.done.wait()
    if job.error is not None:
      raise job.error
    return job.answer

  def _unknown(self, method: str) -> RequestError:
    gets, posts = ("/health", "/stats"), tuple(FIELDS)
    if self.path in gets + posts:
      return RequestError(405, f"{method} {self.path}: use {'GET' if method == 'POST' else 'POST'}")
    return RequestError(
      404, f"no endpoint {self.path}: POST {', '.join(posts)}; GET {', '.join(gets)}"
    )

  def _respond(self, make) -> None:
    try:
      status, body = 200, make()
    except RequestError as e:
      status, body = e.status, {"error": str(e)}
      self.close_connection = True  # the body may be unread
    except Exception as e:  # pylint: disable=broad-except  # a bug answers 500, never kills it
      status, body = 500, {"error": f"internal error: {type(e).__name__}: {e}".splitlines()[0]}
    data = json.dumps(body).encode()
    try:
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)
    except OSError:  # the client left
      pass

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    if self.server.app.verbose:
      super().log_message(format, *args)


class Server:
  """The HTTP server and its worker around a loaded `api.Model`; `port=0` picks a free port.
  `start()` serves from background threads, `close()` stops both."""

  def __init__(
    self,
    model,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 8,
    max_request_bytes: int = 1_000_000,
    verbose: bool = True,
  ):
    self.worker = Worker(model, max_batch)
    self.max_request_bytes, self.verbose = max_request_bytes, verbose
    self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
    self.httpd.daemon_threads = True
    self.httpd.app = self
    self._thread = threading.Thread(
      target=self.httpd.serve_forever, name="fimjax-serve-http", daemon=True
    )

  @property
  def url(self) -> str:
    host, port = self.httpd.server_address[:2]
    return f"http://{host}:{port}"

  def start(self) -> "Server":
    self.worker.thread.start()
    self._thread.start()
    return self

  def close(self) -> None:
    self.httpd.shutdown()
    self.httpd.server_close()
    self.worker.stop()
    self.worker.thread.join(timeout=60)

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    self.close()
