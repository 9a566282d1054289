"""The server's worker: one thread that owns the model and answers queued requests, batching
concurrent infills into shared sampler calls (`fimjax.serve`).

HTTP threads parse and check a request, then queue it; one worker thread makes every JAX call
(one model on one device: more threads would only contend). It takes the oldest request and, for
an infill, the waiting infills with the same temperature, top_k, top_p, max_tokens and stop, up
to `max_batch`. Round i fills hole i of each of them (multi-hole texts included) in one sampler
call (two with stop "line": only line holes stop at a newline), rows padded to a power of two
(at most log2(max_batch) + 1 shapes to compile). Greedy fills equal `Model.infill`'s, batched or
not; a sampled infill with a "seed" runs alone so that the seed reproduces `Model.infill` (one
key draws a whole batch, so a row's draw depends on its partners); one without is batched.
/generate and /score run alone (generate batches its own n samples). /v1/completions requests
with the same settings and kind (fill-in-the-middle, or continuing a prompt) share one sampler
call too: all their n rows at once.
"""

import collections
import dataclasses
import itertools
import threading
import time
import uuid

from fimjax import api
from fimjax import inference
from fimjax import sample as sample_lib


BATCHED = ("/infill", "/v1/completions")


class RequestError(Exception):
  """An answer other than 200: `status` and a one-line message."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


@dataclasses.dataclass
class Job:
  path: str
  req: dict
  queued: float = dataclasses.field(default_factory=time.perf_counter)
  done: threading.Event = dataclasses.field(default_factory=threading.Event)
  answer: dict | None = None
  error: RequestError | None = None

  @property
  def batchable(self) -> bool:  # a seeded draw must not depend on its batch partners
    r = self.req
    return self.path in BATCHED and (r["temperature"] <= 0 or r["top_k"] == 1 or r["seed"] < 0)

  @property
  def key(self) -> tuple:
    r = self.req
    kind = r["suffix"] is None if self.path == "/v1/completions" else r["stop"]
    return (self.path, kind, r["temperature"], r["top_k"], r["top_p"], r["max_tokens"])


class Worker:
  """The thread that owns the model: takes queued jobs (batches of infills) and answers them."""

  def __init__(self, model, max_batch: int):
    self.model, self.max_batch = model, max_batch
    self.queue: collections.deque[Job] = collections.deque()
    self.cond = threading.Condition()
    self.gate = threading.Event()  # cleared: jobs wait in the queue (tests fill it first)
    self.gate.set()
    self.stopping = False
    self.stats = {
      "requests": collections.Counter(),
      "errors": 0,
      "batch_sizes": collections.Counter(),
      "calls": 0,
    }
    self._newlines = None
    self._seeds = itertools.count(1000, 1000)  # for unseeded draws; `fill` adds the hole index
    self.thread = threading.Thread(target=self.run, name="fimjax-serve-worker", daemon=True)

  def submit(self, job: Job) -> None:
    with self.cond:
      self.queue.append(job)
      self.cond.notify_all()

  def wait_queued(self, n: int, timeout: float) -> bool:
    """Whether `n` jobs are waiting within `timeout` s (with `gate` cleared: a test's batch)."""
    with self.cond:
      return self.cond.wait_for(lambda: len(self.queue) >= n, timeout)

  def stop(self) -> None:
    with self.cond:
      self.stopping = True
      self.cond.notify_all()
    self.gate.set()

  def snapshot(self) -> dict:
    with self.cond:
      return {
        "queued": len(self.queue),
        "requests": dict(self.stats["requests"]),
        "errors": self.stats["errors"],
        "sampler_calls": self.stats["calls"],
        "batch_sizes": {str(k): v for k, v in sorted(self.stats["batch_sizes"].items())},
      }

  def run(self) -> None:
    while True:
      with self.cond:
        while not self.queue and not self.stopping:
          self.cond.wait()
        if self.stopping:
          for job in self.queue:
            job.error = RequestError(503, "the server is shutting down")
            job.done.set()
          return
      self.gate.wait()
      self._answer(self._take())

  def _take(self) -> list[Job]:
    """The oldest job, with the waiting infills it can share a sampler call with."""
    with self.cond:
      batch, rest = [self.queue.popleft()], []
      if batch[0].batchable:
        while self.queue and len(batch) < self.max_batch:
          job = self.queue.popleft()
          (batch if job.batchable and job.key == batch[0].key else rest).append(job)
      self.queue.extendleft(reversed(rest))
      return batch

  def _answer(self, batch: list[Job]) -> None:
    start = time.perf_counter()
    try:
      answers = self._compute(batch)
    except Exception as e:  # pylint: disable=broad-except  # answered as 500; the worker goes on
      line = str(e).splitlines()[0] if str(e) else ""
      answers = [RequestError(500, f"internal error: {type(e).__name__}: {line}")] * len(batch)
    took = time.perf_counter() - start
    with self.cond:
      self.stats["batch_sizes"][len(batch)] += 1
      for job, answer in zip(batch, answers):
        self.stats["requests"][job.path] += 1
        self.stats["errors"] += isinstance(answer, RequestError)
    for job, answer in zip(batch, answers):
      if isinstance(answer, RequestError):
        job.error = answer
      else:
        job.answer = {
          **answer,
          "batch": len(batch),
          "queue_ms": round((start - job.queued) * 1e3, 2),
          "compute_ms": round(took * 1e3, 2),
        }
      job.done.set()

  def _compute(self, batch: list[Job]) -> list:
    job, m = batch[0], self.model
    if job.path == "/infill":
      r = job.req
      seed = r["seed"] if r["seed"] >= 0 else next(self._seeds)
      filled = self.fill(
        [j.req["text"] for j in batch],
        temperature=r["temperature"],
        top_k=r["top_k"],
        top_p=r["top_p"],
        max_tokens=r["max_tokens"],
        stop=r["stop"],
        seed=seed,
      )
      return [
        RequestError(400, f"field 'text': {f}") if isinstance(f, Exception) else {"text": f}
        for f in filled
      ]
    if job.path == "/v1/completions":
      return self.complete(batch)
    if job.path == "/generate":
      r = job.req
      samples = m.generate(
        r["n"],
        temperature=r["temperature"],
        top_k=r["top_k"],
        top_p=r["top_p"],
        max_tokens=r["max_tokens"],
        seed=r["seed"],
        batch_size=min(r["n"], self.max_batch),
      )
      self.stats["calls"] += 1
      return [{"samples": samples}]
    loss = m.score(job.req["text"])
    self.stats["calls"] += 1
    return [{"tokens": len(loss) - 1, "loss": [float(x) for x in loss], "mean": float(loss.mean())}]

  def fill(self, texts: list[str], *, temperature, top_k, top_p, max_tokens, stop, seed) -> list:
    """Each text with its holes filled as `Model.infill` fills them (`inference.fill`: left to
    right, hole i seeing the earlier ones filled), hole i of every text in one sampler call;
    an InfillError in place of a text whose hole cannot be filled."""
    m = self.model
    if m.tokenizer.name != "bpe":
      return [
        inference.InfillError(
          f"a {m.tokenizer.name} model cannot fill a text hole; "
          "serve a model trained with --config.data.tokenizer=bpe"
        )
      ] * len(texts)
    sc = api.sample_config(temperature, top_k, top_p, max_tokens)
    sc = dataclasses.replace(sc, max_new=min(sc.max_new, m.model_config.context // 2))
    if stop == "line" and self._newlines is None:
      self._newlines = sample_lib.newline_ids(m.tokenizer)
    return inference.fill_texts(
      texts,
      m.tokenizer,
      m.model_config,
      m.params,
      m.special_ids,
      m.model_vocab_size,
      sc=sc,
      positions=m.positions,
      seed=seed,
      stop=stop,
      newlines=self._newlines,
      rows=min(1 << (len(texts) - 1).bit_length(), self.max_batch),  # every round: one shape
      on_call=self._count_call,
    )

  def _count_call(self) -> None:
    self.stats["calls"] += 1

  def complete(self, batch: list[Job]) -> list:
    """OpenAI-shaped completions of a batch with one kind and settings: every request's `n`
    rows in one sampler call; the middle between prompt and suffix, or the prompt continued."""
    m, r, cfg = self.model, batch[0].req, self.model.model_config
    fim = r["suffix"] is not None
    sc = api.sample_config(r["temperature"], r["top_k"], r["top_p"], r["max_tokens"])
    sc = dataclasses.replace(
      sc, max_new=min(sc.max_new, cfg.context // 2 if fim else cfg.context - 1)
    )
    prompts, answers = [], [None] * len(batch)
    for k, job in enumerate(batch):
      pre = m.tokenizer.encode(job.req["prompt"])
      suf = m.tokenizer.encode(job.req["suffix"]) if fim else []
      try:
        prompt = (
          sample_lib.hole_prompt(
            pre, suf, m.special_ids, cfg.context, sc.max_new, last=True, positions=m.positions
          )
          if fim
          else _continuation(pre, m.special_ids, cfg.context - sc.max_new)
        )
      except ValueError as e:
        answers[k] = RequestError(400, f"field 'prompt': {e}")
        continue
      prompts += [(k, prompt, len(pre) + len(suf))] * job.req["n"]
    if prompts:
      size = 1 << (len(prompts) - 1).bit_length()  # powers of two: few shapes to compile
      seed = r["seed"] if r["seed"] >= 0 else next(self._seeds)
      res = sample_lib.sample(
        cfg,
        m.params,
        [p for _, p, _ in prompts],
        m.special_ids,
        m.model_vocab_size,
        sc=sc,
        seed=seed,
        positions=m.positions,
        mode=sample_lib.INFILL if fim else sample_lib.GENERATE,
        rows=size,
      )
      self.stats["calls"] += 1
      for j, (k, _, used) in enumerate(prompts):
        if answers[k] is None:
          answers[k] = {
            "id": f"cmpl-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": m.path,
            "choices": [],
            "usage": {"prompt_tokens": used, "completion_tokens": 0},
          }
        text, finish = _cut(
          m.tokenizer.decode(res.tokens[j]),
          batch[k].req["stop"],
          "stop" if res.stopped[j] else "length",
        )
        a = answers[k]
        a["choices"].append(
          {"text": text, "index": len(a["choices"]), "logprobs": None, "finish_reason": finish}
        )
        a["usage"]["completion_tokens"] += len(res.tokens[j])
    for a in answers:
      if isinstance(a, dict):
        a["usage"]["total_tokens"] = a["usage"]["prompt_tokens"] + a["usage"]["completion_tokens"]
    return answers


def _continuation(ids: list[int], special_ids: dict, budget: int) -> sample_lib.Prompt:
  """The prompt continuing `ids` in at most `budget` positions (as generation continues)."""
  if budget < 2:
    raise ValueError("max_tokens leaves no room for the prompt: lower max_tokens")
  return inference.continuation_prompt(ids, special_ids, budget)


def _cut(text: str, stops: list[str], finish: str) -> tuple[str, str]:
  """The text up to its first stop sequence (then finish_reason "stop")."""
  cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
  return (text[: min(cuts)], "stop") if cuts else (text, finish)
