"""Grain pipelines over the token cache: training (infinite, checkpointable) and evaluation.

Training: `ShuffledStream`, an infinite MapDataset of codes `epoch * num_windows + window` (a new
seeded permutation of the windows each epoch) -> this process's share
(`[process_index::process_count]`) -> chunks of codes (`batch`) -> one vectorised `map` that builds
the chunk's windows, AR/FIM examples (randomness: hash of (fim.seed, epoch, window)) and rows
(unpacked: the chunk is the batch; packed: first-fit decreasing within a chunk of `PACK_CHUNK`
examples) -> optional `mp_prefetch` -> (packed) `RowBatches`, which cuts the rows into batches and
saves (state of the chunk stream before the current chunk, rows used) so a restore is exact.

`show_examples` is what `python -m fimjax.data.pipeline show --config CONFIG [--split ...]
[--num N] [--json] [--packed]` prints (the command: fimjax/cli/pipeline.py).
"""

import copy
import sys
import threading
from collections.abc import Iterator

from absl import flags
import grain
import numpy as np

from fimjax.data import cache_format
from fimjax.data import fim as fim_lib

PACK_CHUNK = 1024  # examples packed together (first-fit decreasing)
EVAL_CHUNK = 1024
EVAL_SEED = 1234  # fixed FIM seed of the validation examples


def _process(process_index, process_count) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return int(process_index), int(process_count)


def _documents(docs) -> cache_format.Documents:
  """`docs` with int64 starts and lengths (what the example builder indexes with)."""
  return cache_format.Documents(
    docs.tokens,
    np.asarray(docs.starts, np.int64),
    np.asarray(docs.lengths, np.int64),
    getattr(docs, "path", None),
    docs.flags,
    docs.span,
  )


class ShuffledStream(grain.MapDataset):
  """Infinite codes `epoch * n + window`: epoch e visits the n windows in a permutation seeded by
  (seed, e). Vectorised per epoch (grain's per-index shuffle costs ~0.1 ms a call on small sets)."""

  def __init__(self, num_windows: int, seed: int):
    super().__init__()
    self._n, self._seed, self._cache = num_windows, seed, {}
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return sys.maxsize

  def __str__(self) -> str:
    return f"ShuffledStream(num_windows={self._n}, seed={self._seed})"

  def _perm(self, epoch: int) -> np.ndarray:
    with self._lock:
      p = self._cache.get(epoch)
      if p is None:
        p = np.random.default_rng([self._seed, epoch]).permutation(self._n)
        if len(self._cache) >= 4:
          del self._cache[min(self._cache)]
        self._cache[epoch] = p
      return p

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    epoch, k = divmod(index, self._n)
    return epoch * self._n + int(self._perm(epoch)[k])

  def __getstate__(self):
    return {**self.__dict__, "_cache": {}, "_lock": None}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()


class _BuildRows:
  """Codes of a chunk -> dict of [rows, L] arrays (see `fim_lib.make_rows`)."""

  def __init__(self, docs, table, cfg, special_ids, seed, pack):
    self.docs, self.table, self.cfg = docs, table, cfg
    self.special_ids, self.seed, self.pack = dict(special_ids), seed, pack

  def __call__(self, codes):
    return fim_lib.make_rows(
      self.docs, self.table, self.cfg, codes, self.special_ids, seed=self.seed, pack=self.pack
    )


class RowBatches(grain.IterDataset):
  """Cuts a stream of row chunks (dicts of [R_i, L] arrays) into batches of `batch_size` rows."""

  def __init__(self, parent: grain.IterDataset, batch_size: int):
    super().__init__(parent)
    self._batch_size = batch_size

  def __iter__(self):
    return _RowBatchIterator(self._parent.__iter__(), self._batch_size)

  def __str__(self):
    return f"RowBatches(batch_size={self._batch_size})"


class _RowBatchIterator(grain.DatasetIterator):
  """State: the parent's state before the current chunk and the rows of it already used."""

  def __init__(self, parent, batch_size: int):
    super().__init__(parent)
    self._b = batch_size
    self._chunk, self._chunk_state, self._row, self._skip = None, None, 0, 0

  def __next__(self) -> dict:
    parts, need = [], self._b
    while need:
      if self._chunk is None or self._row >= len(self._chunk["tokens"]):
        self._chunk_state = copy.deepcopy(self._parent.get_state())
        self._chunk = next(self._parent)
        self._row, self._skip = self._skip, 0
        continue
      take = min(need, len(self._chunk["tokens"]) - self._row)
      parts.append({k: v[self._row : self._row + take] for k, v in self._chunk.items()})
      self._row += take
      need -= take
    if len(parts) == 1:
      return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def get_state(self):
    if self._chunk is None:
      return {"parent": self._parent.get_state(), "row": self._skip}
    return {"parent": copy.deepcopy(self._chunk_state), "row": self._row}

  def set_state(self, state):
    self._parent.set_state(state["parent"])
    self._chunk, self._row, self._skip = None, 0, int(state["row"])

  def close(self):
    getattr(self._parent, "close", lambda: None)()


def _mark_flags_parsed():
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def make_train_dataset(
  config,
  docs,
  special_ids,
  *,
  process_index=None,
  process_count=None,
  pack: bool | None = None,
  num_workers: int | None = None,
  num_threads: int = 1,
) -> grain.IterDataset:
  """Infinite training batches (dicts of [train.batch_size // process_count, L] arrays).

  `pack`/`num_workers` default to `config.data.pack`/`config.data.num_workers`.
  """
  pi, pc = _process(process_index, process_count)
  pack = config.data.pack if pack is None else pack
  num_workers = config.data.num_workers if num_workers is None else num_workers
  batch = config.train.batch_size // pc
  if batch < 1:
    raise ValueError(f"train.batch_size={config.train.batch_size} < process count {pc}")
  table = fim_lib.WindowTable(docs.lengths, config.model.context)
  n = table.num_windows
  if n == 0:
    raise ValueError("no training documents: the training split is empty")
  build = _BuildRows(
    _documents(docs),
    table,
    fim_lib.FimConfig.from_config(config.fim),
    special_ids,
    config.train.seed,
    pack,
  )
  ds = ShuffledStream(n, config.train.seed)[pi::pc]
  ds = ds.batch(PACK_CHUNK if pack else batch).map(build)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2))
  if num_workers > 0:
    _mark_flags_parsed()
    it = it.mp_prefetch(
      grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2)
    )
  return RowBatches(it, batch) if pack else it


def _eval_chunk_rows(docs, table, cfg, ids, special_ids, pack, build: bool):
  codes = np.asarray(ids, np.int64)
  if build:
    return fim_lib.make_rows(docs, table, cfg, codes, special_ids, seed=0, pack=pack)
  d, start, n = table.spans(codes, 0, 0)
  kind = fim_lib.sample_fim(cfg, 0, codes, start, n, docs, d)[0]
  lengths = np.where(kind == fim_lib.AR, n - 1, n + 2)
  return fim_lib.place(lengths, table.context, pack=pack)[3]


def make_eval_batches(
  config,
  docs,
  special_ids,
  *,
  fim: bool,
  batch_size: int,
  process_index=None,
  process_count=None,
  pack: bool | None = None,
  span_policy: str = "",
) -> Iterator[dict]:
  """The whole split once: fixed cut points; all AR (`fim=False`) or all FIM (`fim=True`: PSM,
  the config's span policy (or `span_policy`) and positions, EOM weight 1, EVAL_SEED; windows
  without content stay AR).

  `batch_size` is global: each process yields [batch_size // process_count, L] batches, all
  processes the same number; rows past the end are padding (loss_mask 0). Packed when `pack`
  (default `config.data.pack`); either way every window is in exactly one row of one process.
  """
  pi, pc = _process(process_index, process_count)
  pack = config.data.pack if pack is None else pack
  b = max(1, batch_size // pc)
  L = config.model.context
  table = fim_lib.WindowTable(docs.lengths, L, shift=False)
  cfg = fim_lib.FimConfig.from_config(
    config.fim,
    rate=1.0 if fim else 0.0,
    spm_rate=0.0,
    seed=EVAL_SEED,
    eom_weight=1.0,
    **({"span_policy": span_policy} if span_policy else {}),
  )
  d = _documents(docs)
  n = table.num_windows
  c = int(min(EVAL_CHUNK, max(1, -(-n // pc))))
  chunks = [np.arange(i, min(n, i + c)) for i in range(0, n, c)]
  rows = [
    len(ch) if not pack else _eval_chunk_rows(d, table, cfg, ch, special_ids, pack, False)
    for ch in chunks
  ]
  num_batches = max((-(-sum(rows[p::pc]) // b) for p in range(pc)), default=0)
  pad = fim_lib.pad_rows(b, L, special_ids["pad"])
  pending, count, emitted = [], 0, 0
  for ch in chunks[pi::pc]:
    out = _eval_chunk_rows(d, table, cfg, ch, special_ids, pack, True)
    pending.append(out)
    count += len(out["tokens"])
    while count >= b:
      allrows = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
      yield {k: v[:b] for k, v in allrows.items()}
      emitted += 1
      pending, count = [{k: v[b:] for k, v in allrows.items()}], count - b
  if count:
    rest = {k: np.concatenate([p[k] for p in pending] + [pad[k][: b - count]]) for k in pad}
    yield rest
    emitted += 1
  for _ in range(num_batches - emitted):
    yield {k: v.copy() for k, v in pad.items()}


# ---------------------------------------------------------------------------------------- show


def show_examples(
  config, docs, special_ids, *, split: str = "train", num: int = 4, packed: bool = False
) -> list[dict]:
  """The first `num` examples of epoch 0 as built for `split` (process 0 of 1), one per window.

  Train: in shuffled order with the config's FIM settings. Validation: the fixed windows in
  order, FIM per `fim.rate` with EVAL_SEED. `packed`: the first `num` packed rows instead
  (train: the training stream; validation: the FIM evaluation rows).
  """
  if packed:
    if split == "train":
      it = iter(
        make_train_dataset(
          config, docs, special_ids, process_index=0, process_count=1, pack=True, num_workers=0
        )
      )
      rows = [next(it) for _ in range(-(-num // max(1, config.train.batch_size)))]
      it.close()
    else:
      rows = list(
        make_eval_batches(
          config,
          docs,
          special_ids,
          fim=config.fim.rate > 0,
          batch_size=num,
          process_index=0,
          process_count=1,
          pack=True,
        )
      )
    out = {k: np.concatenate([r[k] for r in rows])[:num] for k in rows[0]} if rows else {}
    return [
      {**{k: v[i].tolist() for k, v in out.items()}, "special_ids": dict(special_ids)}
      for i in range(len(out.get("tokens", [])))
    ]
  d = _documents(docs)
  if split == "train":
    table = fim_lib.WindowTable(d.lengths, config.model.context)
    n = table.num_windows
    stream = ShuffledStream(n, config.train.seed)
    codes = np.array([stream[i] for i in range(min(num, n))], np.int64)
    cfg, seed = fim_lib.FimConfig.from_config(config.fim), config.train.seed
  else:
    table = fim_lib.WindowTable(d.lengths, config.model.context, shift=False)
    codes = np.arange(min(num, table.num_windows))
    cfg = fim_lib.FimConfig.from_config(config.fim, seed=EVAL_SEED)
    seed = 0
  if not len(codes):
    return []
  rows, meta = fim_lib.make_rows(
    d, table, cfg, codes, special_ids, seed=seed, pack=False, meta=True
  )
  sp, result = special_ids, []
  for i in range(len(codes)):
    doc, s, n, ln = (int(meta[k][i]) for k in ("doc", "start", "n", "lengths"))
    ext = np.concatenate(
      [[sp["bos"]], d.tokens[d.starts[doc] : d.starts[doc] + d.lengths[doc]], [sp["eos"]]]
    ).astype(np.int64)
    kind = int(meta["kind"][i])
    result.append(
      {
        **{k: rows[k][i, :ln].tolist() for k in ("tokens", "pos", "gap", "targets", "loss_mask")},
        "doc_index": doc,
        "window_start": s,
        "window": ext[s : s + n].tolist(),
        "is_fim": kind != fim_lib.AR,
        "kind": ("ar", "psm", "spm")[kind],
        "middle": [int(meta["g"][i]), int(meta["g"][i] + meta["m"][i])] if kind else None,
        "hole": fim_lib.holes_lib.KINDS[int(meta["hole"][i])] if kind else None,
        "epoch": int(meta["epoch"][i]),
        "special_ids": dict(sp),
      }
    )
  return result
