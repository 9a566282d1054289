"""The server over real HTTP (http.client) on 127.0.0.1: each endpoint against the Python API,
concurrent infills batched into one sampler call, bad requests answered and survived."""

import http.client
import json
import queue
import signal
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

import fimjax
from fimjax import serve
from fimjax.cli import serve as serve_cli
from tests.conftest import default_sigint
from tests.train_test import REPO

MAX_BATCH = 5  # 10 concurrent requests: two calls of 5 rows (one batch shape to compile)
LIMIT = 20_000  # --max_request_bytes: a body over it fits in the socket buffers
TEXT = "name: CI\non: push\njobs:\n  build:\n    runs-on: <FILL>\n    steps:\n<FILL>\n"
OPTS = {"max_tokens": 8}  # one sampler compilation for the whole module


@pytest.fixture(scope="module")
def model(trained_workdir):
  return fimjax.load(trained_workdir)


@pytest.fixture(scope="module")
def server(model):
  with serve.Server(
    model, port=0, max_batch=MAX_BATCH, max_request_bytes=LIMIT, verbose=False
  ) as s:
    yield s


def call(server_or_url, method: str, path: str, body=None, *, timeout: float = 120):
  """(status, JSON answer); `body` a dict (sent as JSON) or raw bytes."""
  url = server_or_url if isinstance(server_or_url, str) else server_or_url.url
  host, port = url.removeprefix("http://").split(":")
  conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
  try:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())
  finally:
    conn.close()


def test_infill_fills_every_hole_as_the_api_does(server, model):
  status, out = call(server, "POST", "/infill", {"text": TEXT, **OPTS})
  assert status == 200, out
  assert out["text"] == model.infill(TEXT, **OPTS)
  assert "<FILL>" not in out["text"] and out["text"].startswith("name: CI\non: push\n")
  assert out["batch"] == 1 and out["compute_ms"] > 0 and out["queue_ms"] >= 0
  # A seeded draw runs alone, so the seed gives what the API gives.
  sampled = {"temperature": 1.0, "seed": 3, **OPTS}
  status, out = call(server, "POST", "/infill", {"text": TEXT, **sampled})
  assert status == 200 and out["text"] == model.infill(TEXT, **sampled), out


PROMPT, SUFFIX = "name: CI\non: push\njobs:\n  build:\n    runs-on:", "\n    steps:\n"


def test_completions_fill_between_prompt_and_suffix_as_infill_does(server, model):
  """The OpenAI shape: with a suffix, the middle (what /infill writes into a span hole there)."""
  body = {"model": "fimjax", "prompt": PROMPT, "suffix": SUFFIX, "temperature": 0, "n": 2, **OPTS}
  status, out = call(server, "POST", "/v1/completions", body)
  assert status == 200, out
  filled = model.infill(PROMPT + "<FILL>" + SUFFIX, **OPTS)
  middle = filled[len(PROMPT) : len(filled) - len(SUFFIX)]
  assert [c["text"] for c in out["choices"]] == [middle, middle]
  assert [c["index"] for c in out["choices"]] == [0, 1] and out["object"] == "text_completion"
  assert all(c["finish_reason"] in ("stop", "length") for c in out["choices"])
  assert out["usage"]["prompt_tokens"] == len(model.tokenizer.encode(PROMPT)) + len(
    model.tokenizer.encode(SUFFIX)
  )


def test_completions_without_suffix_continue_the_prompt_up_to_a_stop(server, model):
  body = {"prompt": PROMPT, "temperature": 1.0, "seed": 5, "n": 3, "stop": "\n", **OPTS}
  status, out = call(server, "POST", "/v1/completions", body)
  assert status == 200 and len(out["choices"]) == 3, out
  for c in out["choices"]:
    assert "\n" not in c["text"]
    assert c["finish_reason"] in ("stop", "length")
  assert 0 < out["usage"]["completion_tokens"] <= 3 * 8


def test_generate_returns_n_samples_as_the_api_does(server, model):
  status, out = call(server, "POST", "/generate", {"n": 2, "seed": 1, **OPTS})
  assert status == 200, out
  assert out["samples"] == model.generate(2, seed=1, batch_size=2, **OPTS)
  assert len(out["samples"]) == 2 and all(isinstance(s, str) for s in out["samples"])


def test_score_gives_the_apis_per_token_loss(server, model):
  text = "name: CI\non: push\n"
  status, out = call(server, "POST", "/score", {"text": text})
  assert status == 200, out
  assert out["tokens"] == len(model.tokenizer.encode(text)) == len(out["loss"]) - 1
  np.testing.assert_allclose(out["loss"], model.score(text), rtol=1e-6)
  assert out["mean"] == pytest.approx(np.mean(out["loss"]), rel=1e-6)


def test_health_names_the_model_step_and_tokenizer(server, model):
  status, out = call(server, "GET", "/health")
  assert status == 200
  assert (out["model"], out["step"], out["tokenizer"]) == (model.path, 2, model.tokenizer_id)


def test_ten_concurrent_infills_are_answered_in_batches(server, model):
  texts = [
    f"name: ci{i}\non: push\njobs:\n  b{i}:\n    runs-on: <FILL>\n    steps:\n<FILL>\n"
    for i in range(10)
  ]
  before = server.worker.snapshot()["batch_sizes"].get(str(MAX_BATCH), 0)
  answers = [None] * len(texts)

  def send(i):
    answers[i] = call(server, "POST", "/infill", {"text": texts[i], **OPTS})

  server.worker.gate.clear()  # all ten wait in the queue, then the worker drains them
  try:
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(texts))]
    for t in threads:
      t.start()
    assert server.worker.wait_queued(len(texts), timeout=60)
  finally:
    server.worker.gate.set()
  for t in threads:
    t.join(timeout=120)
  assert all(a is not None and a[0] == 200 for a in answers), answers
  assert [a[1]["batch"] for a in answers] == [MAX_BATCH] * len(texts)
  assert server.worker.snapshot()["batch_sizes"][str(MAX_BATCH)] == before + 2
  # Greedy: batched rows fill as each text alone.
  assert [a[1]["text"] for a in answers] == [model.infill(t, **OPTS) for t in texts]


def test_concurrent_completions_share_one_sampler_call(server):
  """Three FIM completions with the same settings queue together: one batch, one call."""
  answers = [None] * 3

  def send(i):
    answers[i] = call(
      server,
      "POST",
      "/v1/completions",
      {"prompt": PROMPT + f" # {i}", "suffix": SUFFIX, "temperature": 0, **OPTS},
    )

  calls = server.worker.snapshot()["sampler_calls"]
  server.worker.gate.clear()
  try:
    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for t in threads:
      t.start()
    assert server.worker.wait_queued(3, timeout=60)
  finally:
    server.worker.gate.set()
  for t in threads:
    t.join(timeout=120)
  assert [(a[0], a[1]["batch"]) for a in answers] == [(200, 3)] * 3, answers
  assert server.worker.snapshot()["sampler_calls"] == calls + 1


@pytest.mark.parametrize("stop", ["eom", "line"])
def test_a_batch_of_texts_with_uneven_holes_fills_each_as_alone(model, stop):
  texts = [
    "on: push\njobs:\n  a:\n    runs-on: <FILL>\n",
    "name: x\non: <FILL>\njobs:\n  b:\n<FILL>\n",
    "name: <FILL>\non: [push]\njobs:\n<FILL>\n    runs-on: <FILL>\n",
    "jobs:\n  c:\n    steps:\n<FILL>\n      - run: make\n",
    "on: <FILL>\njobs:\n  d:\n    runs-on: ubuntu-latest<FILL>\n",
  ]
  worker = serve.Worker(model, MAX_BATCH)  # no thread: fill is what the worker runs
  assert worker.fill(texts, temperature=0.0, top_k=0, top_p=1.0, stop=stop, seed=0, **OPTS) == [
    model.infill(t, stop=stop, **OPTS) for t in texts
  ]
  # One call per round (3 rounds); with stop "line", line and span holes of a round apart.
  assert worker.stats["calls"] == (3 if stop == "eom" else 5)


@pytest.mark.parametrize(
  "method, path, body, status, says",
  [
    ("POST", "/infill", b"{\"text\": ", 400, "bad JSON"),
    ("POST", "/infill", b"\xff\xfe", 400, "bad JSON"),
    ("POST", "/infill", [TEXT], 400, "send a JSON object"),
    ("POST", "/infill", {}, 400, "missing field 'text'"),
    ("POST", "/infill", {"text": 3}, 400, "field 'text': 3 is not a string"),
    ("POST", "/infill", {"text": TEXT, "max_tokens": "8"}, 400, "'max_tokens': \"8\" is not an"),
    ("POST", "/infill", {"text": TEXT, "top_k": True}, 400, "'top_k': true is not an integer"),
    ("POST", "/infill", {"text": TEXT, "temperature": float("nan")}, 400, "'temperature': NaN"),
    ("POST", "/infill", {"text": TEXT, "prompt": "x"}, 400, "unknown field 'prompt'"),
    ("POST", "/infill", {"text": "no hole here"}, 400, "'text' has no hole"),
    ("POST", "/infill", {"text": TEXT, "temperature": -1}, 400, "'temperature': -1 must be >= 0"),
    ("POST", "/infill", {"text": TEXT, "top_p": 0}, 400, "'top_p': 0 must be in (0, 1]"),
    ("POST", "/infill", {"text": TEXT, "top_k": 10**6}, 400, "'top_k': 1000000 must be <="),
    ("POST", "/infill", {"text": TEXT, "stop": "eof"}, 400, "'stop': 'eof' must be one of"),
    ("POST", "/generate", {"n": 0}, 400, "'n': 0 must be in [1, 64]"),
    ("POST", "/score", {"text": TEXT, "seed": 1}, 400, "unknown field 'seed'"),
    ("POST", "/infill", {"text": "x" * LIMIT + "<FILL>"}, 413, "--max_request_bytes"),
    ("POST", "/v1/complete", {"prompt": "x"}, 404, "no endpoint /v1/complete"),
    ("POST", "/v1/completions", {"suffix": "x"}, 400, "missing field 'prompt'"),
    ("POST", "/v1/completions", {"prompt": "a", "stream": True}, 400, "streaming is not"),
    ("POST", "/v1/completions", {"prompt": "a", "stop": ["a"] * 5}, 400, "up to 4 strings"),
    ("POST", "/v1/completions", {"prompt": "a", "suffix": 1}, 400, "a string or null"),
    ("POST", "/v1/completions", {"prompt": "a", "echo": True}, 400, "unknown field 'echo'"),
    ("GET", "/infill", None, 405, "use POST"),
  ],
)
def test_a_bad_request_is_refused_with_one_line_and_serving_goes_on(
  server, method, path, body, status, says
):
  got, out = call(server, method, path, body)
  assert (got, "\n" in out["error"]) == (status, False), out
  assert says in out["error"], out
  assert call(server, "GET", "/health")[0] == 200


def test_an_error_in_the_worker_answers_500_and_the_worker_goes_on(server, model, monkeypatch):
  def boom(text):
    raise RuntimeError(f"broken on {text!r}\nsecond line")

  monkeypatch.setattr(model, "score", boom)
  status, out = call(server, "POST", "/score", {"text": "a"})
  assert (status, out["error"]) == (500, "internal error: RuntimeError: broken on 'a'")
  monkeypatch.undo()
  status, out = call(server, "POST", "/infill", {"text": TEXT, **OPTS})
  assert status == 200 and out["text"] == model.infill(TEXT, **OPTS)


def test_the_cli_serves_until_interrupted(trained_workdir):
  proc = subprocess.Popen(
    [sys.executable, "-m", "fimjax.serve", "--model", str(trained_workdir), "--port", "0"],
    cwd=REPO,
    stderr=subprocess.PIPE,
    text=True,
    preexec_fn=default_sigint,
  )
  lines = queue.Queue()
  threading.Thread(target=lambda: [lines.put(l) for l in proc.stderr], daemon=True).start()
  try:
    line = ""
    while not line.startswith("serving "):
      line = lines.get(timeout=120)
    url = line.split(" on ")[-1].strip()
    status, out = call(url, "GET", "/health")
    assert status == 200 and out["step"] == 2
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
  finally:
    proc.kill()


def test_the_cli_names_what_is_wrong_in_one_line(trained_workdir, tmp_path, capsys):
  assert serve_cli.main(["--model", str(tmp_path / "nothing")]) == 1
  assert capsys.readouterr().err.count("\n") == 1
  with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    assert serve_cli.main(["--model", str(trained_workdir), "--port", str(port)]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and f"--port {port}" in err and "pick another --port" in err
