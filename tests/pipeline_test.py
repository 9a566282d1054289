"""Grain training/evaluation pipelines (fimjax.data.pipeline) and the `show` CLI."""

import collections
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from fimjax import config_base
from fimjax.data import fim, pipeline
from fimjax.data.cache import Documents

V = 4000
SP = {"pad": V - 1, "bos": V, "eos": V + 1, "mask": V + 2, "mid": V + 3, "eom": V + 4}
L = 32
REPO = pathlib.Path(__file__).resolve().parent.parent


def unique_docs(num=40, seed=0):
  """Documents whose content tokens are all distinct, so a token names its place."""
  lengths = np.random.default_rng(seed).integers(0, 80, num)
  lengths[:3] = [0, L - 3, 2 * (L - 3)]  # empty, exact multiples of the window
  ids = np.random.default_rng(seed + 1).permutation(V - 1)[: lengths.sum()]
  return Documents.from_lists(np.split(ids, np.cumsum(lengths)[:-1]))


def make_config(rate=0.5, batch=8, pack=False):
  c = config_base.base_config("tiny")
  c.model.context, c.train.batch_size, c.data.pack, c.fim.rate = L, batch, pack, rate
  c.fim.spm_rate = 0.2
  return c


def take(it, n):
  return [next(it) for _ in range(n)]


def rows(batches):
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def loss_targets(r):
  return r["targets"][r["loss_mask"] > 0]


def expected_targets(docs):
  """Every content token and each document's EOS: what AR predicts exactly once per epoch."""
  return collections.Counter(np.asarray(docs.tokens).tolist() + [SP["eos"]] * len(docs))


@pytest.mark.parametrize("pack", [False, True])
def test_batches_have_the_contract_shapes(pack):
  docs = unique_docs()
  it = iter(
    pipeline.make_train_dataset(make_config(pack=pack), docs, SP, process_index=0, process_count=1)
  )
  for b in take(it, 3):
    assert set(b) == set(fim.FIELDS)
    for k, v in b.items():
      assert v.shape == (8, L) and v.dtype == fim.DTYPES[k], k
    pad = b["segment_ids"] == 0
    assert (b["tokens"][pad] == SP["pad"]).all() and (b["loss_mask"][pad] == 0).all()
    assert (b["gap"][pad] == 0).all() and (b["pos"][pad] == 0).all()
  if pack:
    assert (b["segment_ids"] > 0).mean() > 0.85 and b["segment_ids"].max() > 1


def test_two_hosts_are_disjoint_and_cover_each_epoch():
  docs = unique_docs()
  c = make_config(rate=0.0, batch=8)
  n = fim.WindowTable(docs.lengths, L).num_windows
  per_host = -(-2 * n // 8) + 1
  hosts = [
    rows(
      take(
        iter(pipeline.make_train_dataset(c, docs, SP, process_index=p, process_count=2)), per_host
      )
    )
    for p in range(2)
  ]
  assert all(len(h["tokens"]) == per_host * 4 for h in hosts)
  # Global example i is host i % 2's row i // 2.
  glob = {k: np.stack([hosts[0][k], hosts[1][k]], 1).reshape(-1, L) for k in hosts[0]}
  first_tokens = []
  for epoch in range(2):
    r = {k: v[epoch * n : (epoch + 1) * n] for k, v in glob.items()}
    assert collections.Counter(loss_targets(r).tolist()) == expected_targets(docs)
    first_tokens.append(set(r["tokens"][:, 0].tolist()))
  assert first_tokens[0] != first_tokens[1]  # cut points move between epochs
  for h in hosts:  # rows with the same window never meet on two hosts within an epoch
    assert (h["segment_ids"][:, 0] == 1).all()


def test_fim_epoch_contains_every_token():
  docs = unique_docs()
  c = make_config(rate=0.5, batch=4)
  n = fim.WindowTable(docs.lengths, L).num_windows
  r = rows(
    take(
      iter(pipeline.make_train_dataset(c, docs, SP, process_index=0, process_count=1)), -(-n // 4)
    )
  )
  r = {k: v[:n] for k, v in r.items()}
  seen = set(r["tokens"][r["segment_ids"] > 0].tolist())
  assert set(np.asarray(docs.tokens).tolist()) <= seen
  share = ((r["gap"] > 0).any(1)).mean()
  assert 0.3 < share < 0.7


@pytest.mark.parametrize("pack", [False, True])
def test_restored_iterator_gives_identical_batches_across_an_epoch_boundary(pack):
  docs = unique_docs()
  c = make_config(pack=pack, batch=8)
  ds = pipeline.make_train_dataset(c, docs, SP, process_index=0, process_count=1)
  n = fim.WindowTable(docs.lengths, L).num_windows
  it = iter(ds)
  before = n // 8 - 1 if not pack else n // 20  # a few batches before the first epoch ends
  take(it, before)
  state = json.loads(json.dumps(it.get_state()))  # as a checkpoint stores it
  want = take(it, 2 * (n // 8) + 3)  # crosses epoch boundaries
  for _ in range(2):
    it2 = iter(ds)
    take(it2, 1)
    it2.set_state(state)
    assert json.loads(json.dumps(it2.get_state())) == state
    for a, b in zip(want, take(it2, len(want))):
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_multiprocess_prefetch_gives_the_same_batches_and_restores():
  docs = unique_docs()
  c = make_config(pack=True, batch=8)
  ref = take(iter(pipeline.make_train_dataset(c, docs, SP, process_index=0, process_count=1)), 12)
  ds = pipeline.make_train_dataset(c, docs, SP, process_index=0, process_count=1, num_workers=2)
  it = iter(ds)
  got = take(it, 6)
  state = it.get_state()
  it.close()
  it2 = iter(ds)
  it2.set_state(state)
  got += take(it2, 6)
  it2.close()
  for a, b in zip(ref, got):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("procs", [1, 2])
def test_eval_covers_every_validation_token_once(pack, procs):
  docs = unique_docs(num=30, seed=5)
  c = make_config(rate=0.5, pack=pack)
  table = fim.WindowTable(docs.lengths, L, shift=False)
  for use_fim in (False, True):
    shards = [
      list(
        pipeline.make_eval_batches(
          c, docs, SP, fim=use_fim, batch_size=6, process_index=p, process_count=procs
        )
      )
      for p in range(procs)
    ]
    assert len({len(s) for s in shards}) == 1  # same number of steps on every process
    for s in shards:
      assert all(b["tokens"].shape == (6 // procs, L) for b in s)
    r = rows([b for s in shards for b in s])
    if not use_fim:
      assert collections.Counter(loss_targets(r).tolist()) == expected_targets(docs)
    else:
      eligible = (docs.lengths[table.doc] > 0).sum()  # all but [BOS, EOS] windows
      assert (r["tokens"] == SP["mid"]).sum() == eligible  # every window once, all FIM
      assert set(np.asarray(docs.tokens).tolist()) <= set(r["tokens"].ravel().tolist())
      assert (r["gap"] > 0).sum() > 0
  again = list(
    pipeline.make_eval_batches(
      c, docs, SP, fim=True, batch_size=6, process_index=0, process_count=procs
    )
  )
  for a, b in zip(again, shards[0]):
    np.testing.assert_array_equal(a["tokens"], b["tokens"])  # deterministic


def test_show_examples_one_per_window():
  docs = unique_docs()
  c = make_config(rate=0.5)
  for split in ("train", "validation"):
    exs = pipeline.show_examples(c, docs, SP, split=split, num=10)
    assert len(exs) == 10
    for ex in exs:
      d, s, w = ex["doc_index"], ex["window_start"], ex["window"]
      full = [SP["bos"]] + docs[d].tolist() + [SP["eos"]]
      assert full[s : s + len(w)] == w
      assert len(ex["tokens"]) == len(w) + (2 if ex["is_fim"] else -1)
      assert ex["special_ids"] == SP
  packed = pipeline.show_examples(c, docs, SP, num=3, packed=True)
  assert len(packed) == 3 and all(len(p["segment_ids"]) == L for p in packed)


def test_show_cli_json(tmp_path):
  """`python -m fimjax.data.pipeline show ... --json` on the tiny config's default corpus."""
  cmd = [
    sys.executable,
    "-m",
    "fimjax.data.pipeline",
    "show",
    "--config",
    "configs/tiny.py",
    "--config.data.corpus=synthetic:50",
    "--config.data.bpe_vocab_size=600",
    f"--workdir={tmp_path}",
    "--num",
    "3",
    "--json",
  ]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
  lines = [json.loads(x) for x in out.stdout.splitlines()]
  assert len(lines) == 3
  keys = {
    "tokens",
    "pos",
    "gap",
    "targets",
    "loss_mask",
    "doc_index",
    "window_start",
    "window",
    "is_fim",
    "special_ids",
  }
  assert all(keys <= set(x) for x in lines)
  readable = subprocess.run(
    cmd[:-1] + ["--packed", "--num", "1"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
    check=True,
  )
  assert "segment 1" in readable.stdout


def test_memmapped_documents_pickle_as_their_file(tmp_path):
  """Workers get the file's path, not its content (np.memmap pickles every byte)."""
  import pickle  # pylint: disable=g-import-not-at-top

  tokens = np.arange(100_000, dtype=np.uint16)
  np.save(tmp_path / "tokens.npy", tokens)
  mm = np.load(tmp_path / "tokens.npy", mmap_mode="r")
  for arr in (mm, mm[1000:]):
    docs = Documents(arr, np.array([0, 10]), np.array([10, 5]), flags=arr, span=arr[5:])
    blob = pickle.dumps(docs)
    assert len(blob) < 10_000
    back = pickle.loads(blob)
    np.testing.assert_array_equal(np.asarray(back.tokens), np.asarray(arr))
    np.testing.assert_array_equal(np.asarray(back.flags), np.asarray(arr))
    np.testing.assert_array_equal(np.asarray(back.span), np.asarray(arr[5:]))
