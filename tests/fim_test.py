"""Windowing, AR/FIM example construction and packing (fimjax.data.fim)."""

import numpy as np
import pytest

from fimjax import synthetic
from fimjax.data import fim
from fimjax.data import holes
from tests.conftest import byte_docs
from fimjax.data.cache import Documents

V = 500  # tokenizer vocab (PAD = V - 1); specials follow
SP = {"pad": V - 1, "bos": V, "eos": V + 1, "mask": V + 2, "mid": V + 3, "eom": V + 4}
L = 32
T = L - 3


def make_docs(lengths, seed=0):
  rng = np.random.default_rng(seed)
  return Documents.from_lists([rng.integers(0, V - 1, n).tolist() for n in lengths])


# Lengths around window boundaries (multiples of T, +-1), short, empty and long documents.
LENGTHS = [0, 1, 2, 5, T - 2, T - 1, T, T + 1, 2 * T - 1, 2 * T, 2 * T + 1, 3 * T + 7, 100, 257]


def ext(docs, d):
  return np.concatenate([[SP["bos"]], docs[d], [SP["eos"]]]).astype(np.int64)


def rows_for(docs, cfg, epoch=0, seed=0, pack=False, table=None):
  table = table or fim.WindowTable(docs.lengths, L)
  codes = epoch * table.num_windows + np.arange(table.num_windows)
  return fim.make_rows(docs, table, cfg, codes, SP, seed=seed, pack=pack, meta=True)


def test_windows_cover_every_token_each_epoch_and_move():
  lengths = np.array(LENGTHS)
  table = fim.WindowTable(lengths, L)
  starts = []
  for epoch in range(4):
    d, a, n = table.spans(np.arange(table.num_windows), epoch, seed=3)
    assert (n >= 2).all() and (n <= L - 2).all()
    for doc in range(len(lengths)):
      at = d == doc
      s, e = a[at], a[at] + n[at]
      # Windows tile [0, E) with one shared token between neighbours.
      assert s[0] == 0 and e[-1] == lengths[doc] + 2
      np.testing.assert_array_equal(s[1:], e[:-1] - 1)
    starts.append(a)
  assert table.num_windows == len(starts[0])  # static per epoch
  long_docs = np.isin(table.doc, np.flatnonzero(lengths > 2 * T))
  moved = [(starts[0][long_docs] != starts[k][long_docs]).any() for k in (1, 2, 3)]
  assert all(moved)
  assert (table.count[lengths + 1 <= T] == 1).all()  # short documents: one window, always


def test_fixed_windows_for_evaluation():
  lengths = np.array(LENGTHS)
  table = fim.WindowTable(lengths, L, shift=False)
  a0 = table.spans(np.arange(table.num_windows), 0, 0)
  a1 = table.spans(np.arange(table.num_windows), 5, 9)
  for x, y in zip(a0, a1):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_array_equal(table.count, -(-(lengths + 1) // T))


def test_fim_rate_zero_is_next_token_training():
  docs = make_docs(LENGTHS)
  rows, meta = rows_for(docs, fim.FimConfig(rate=0.0))
  assert (meta["kind"] == fim.AR).all()
  for i in range(len(meta["doc"])):
    w = ext(docs, meta["doc"][i])[meta["start"][i] :][: meta["n"][i]]
    k = len(w) - 1
    np.testing.assert_array_equal(rows["tokens"][i, :k], w[:-1])
    np.testing.assert_array_equal(rows["targets"][i, :k], w[1:])
    np.testing.assert_array_equal(rows["pos"][i, :k], meta["start"][i] + np.arange(k))
    assert (rows["gap"][i] == 0).all() and (rows["loss_mask"][i, :k] == 1).all()
    assert (rows["segment_ids"][i, :k] == 1).all()
    assert (rows["tokens"][i, k:] == SP["pad"]).all() and (rows["loss_mask"][i, k:] == 0).all()
    assert (rows["segment_ids"][i, k:] == 0).all() and (rows["pos"][i, k:] == 0).all()


def _check_fim(tokens, targets, pos, gap, loss, w, start, kind, g, m, step=0):
  """Every window token appears once, in its place by (pos, gap); middle targets are true.

  `step`: how pos moves along the middle (0 collapsed, 1 continued)."""
  n = len(w)
  mask_at = np.flatnonzero(tokens == SP["mask"])
  mid_at = np.flatnonzero(tokens == SP["mid"])
  assert len(mask_at) == 1 and len(mid_at) == 1 and len(tokens) == n + 2
  assert pos[mask_at[0]] == start + g and gap[mask_at[0]] == 0
  assert mid_at[0] == n - m + 1 and pos[mid_at[0]] == start + g and gap[mid_at[0]] == 1
  # Middle: MID then the middle tokens; their targets are the true middle and finally EOM.
  q = mid_at[0]
  np.testing.assert_array_equal(targets[q:], np.concatenate([w[g : g + m], [SP["eom"]]]))
  np.testing.assert_array_equal(gap[q:], np.arange(1, m + 2))
  np.testing.assert_array_equal(pos[q:], start + g + step * np.arange(m + 1))
  assert (loss[q:] == 1).all()
  # Reconstruct the window from (pos, gap): each index exactly once.
  rebuilt = np.full(n, -1)
  content = (tokens != SP["mask"]) & (tokens != SP["mid"])
  for t, p, gp in zip(tokens[content], pos[content], gap[content]):
    p -= start
    idx = g + gp - 2 if gp else (p if p < g else p - 1 + m)
    assert rebuilt[idx] == -1
    rebuilt[idx] = t
  np.testing.assert_array_equal(rebuilt, w)
  # No loss exactly on the sentinel targets (and SPM's prefix[0]).
  no_loss = (targets == SP["mask"]) | (targets == SP["mid"])
  if kind == fim.SPM and g > 0:
    no_loss[np.flatnonzero(tokens == SP["mask"])[0] + (n - g - m)] = True
    assert tokens[0] == SP["mask"]
  else:
    np.testing.assert_array_equal(tokens[:g], w[:g])
  np.testing.assert_array_equal(loss, (~no_loss).astype(np.float32))
  assert (w[g : g + m] < V).all()  # BOS / EOS are never in the middle


@pytest.mark.parametrize("policy", ["token", "uniform", "split", "mixed"])
@pytest.mark.parametrize("spm_rate", [0.0, 1.0])
@pytest.mark.parametrize("positions", ["collapsed", "continued"])
def test_fim_examples(policy, spm_rate, positions):
  docs = make_docs(LENGTHS * 3, seed=1)  # no structure marks: structure kinds cut split holes
  cfg = fim.FimConfig(
    rate=1.0,
    span_policy=policy,
    max_span=5,
    spm_rate=spm_rate,
    seed=7,
    positions=positions,
    mix=(0.3, 0.3, 0.0, 0.4, 0, 0, 0, 0),
  )
  rows, meta = rows_for(docs, cfg, epoch=2)
  assert (meta["kind"][meta["n"] > 3] != fim.AR).all()
  for i in range(len(meta["doc"])):
    w = ext(docs, meta["doc"][i])[meta["start"][i] :][: meta["n"][i]]
    k = meta["lengths"][i]
    r = {f: rows[f][i] for f in fim.FIELDS}
    assert (r["segment_ids"][:k] == 1).all() and (r["segment_ids"][k:] == 0).all()
    if meta["kind"][i] == fim.AR:  # only windows without content ([BOS, EOS])
      assert (w >= V).all()
      continue
    assert meta["kind"][i] == (fim.SPM if spm_rate else fim.PSM)
    g, m = meta["g"][i], meta["m"][i]
    if policy == "token":
      assert m == 1
    elif policy == "uniform":
      assert 1 <= m <= 5
    _check_fim(
      r["tokens"][:k],
      r["targets"][:k],
      r["pos"][:k],
      r["gap"][:k],
      r["loss_mask"][:k],
      w,
      meta["start"][i],
      meta["kind"][i],
      g,
      m,
      step=fim.middle_pos_step(positions),
    )


def test_special_ids_never_collide_with_content():
  docs = make_docs([300] * 20, seed=2)
  rows, meta = rows_for(docs, fim.FimConfig(rate=0.5, spm_rate=0.3))
  content = rows["segment_ids"] > 0
  tok = rows["tokens"][content]
  assert (np.asarray(docs.tokens) < V - 1).all()  # content ids are tokenizer ids (PAD excluded)
  assert set(tok[tok >= V - 1].tolist()) <= {SP["bos"], SP["eos"], SP["mask"], SP["mid"]}
  is_fim = meta["kind"] != fim.AR
  per_row = lambda name: (rows["tokens"] == SP[name]).sum(1)  # noqa: E731
  np.testing.assert_array_equal(per_row("mask"), is_fim)
  np.testing.assert_array_equal(per_row("mid"), is_fim)
  np.testing.assert_array_equal(per_row("bos"), meta["start"] == 0)
  np.testing.assert_array_equal((rows["targets"] == SP["eom"]).sum(1), is_fim)
  assert len(set(SP.values())) == len(SP) and min(v for k, v in SP.items() if k != "pad") == V


def test_fim_share_matches_rate_and_is_a_pure_function():
  docs = make_docs([600] * 200, seed=3)
  table = fim.WindowTable(docs.lengths, L)
  cfg = fim.FimConfig(rate=0.3, spm_rate=0.25, seed=11)
  ids = np.arange(table.num_windows)
  d, s, n = table.spans(ids, 4, seed=0)
  kind, g, m, _ = fim.sample_fim(cfg, 4, ids, s, n, docs, d)
  N = len(ids)
  share = (kind != fim.AR).mean()
  assert abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / N), (share, N)
  spm = (kind == fim.SPM).sum() / (kind != fim.AR).sum()
  assert abs(spm - 0.25) < 0.05
  # Same (seed, epoch, index) -> same draw, whatever else is in the batch.
  sub = ids[::7][::-1]
  k2, g2, _, _ = fim.sample_fim(cfg, 4, sub, s[sub], n[sub], docs, d[sub])
  np.testing.assert_array_equal(k2, kind[sub])
  np.testing.assert_array_equal(g2, g[sub])
  k3 = fim.sample_fim(cfg, 5, ids, s, n, docs, d)[0]
  assert (k3 != kind).any()  # another epoch, other draws


def test_packing_keeps_examples_intact():
  docs = make_docs(np.random.default_rng(4).integers(0, 60, 300), seed=4)
  cfg = fim.FimConfig(rate=0.5, spm_rate=0.5)
  flat, fmeta = rows_for(docs, cfg, epoch=1, seed=5)
  packed, pmeta = rows_for(docs, cfg, epoch=1, seed=5, pack=True)
  assert len(packed["tokens"]) < 0.7 * len(flat["tokens"])
  real = (packed["segment_ids"] > 0).sum()
  assert real == (flat["segment_ids"] > 0).sum()
  assert real / packed["tokens"].size > 0.9
  for i in range(len(pmeta["doc"])):
    r, o, k = pmeta["row"][i], pmeta["offset"][i], pmeta["lengths"][i]
    seg = packed["segment_ids"][r, o]
    assert seg >= 1 and (packed["segment_ids"][r, o : o + k] == seg).sum() == k
    for f in ("tokens", "targets", "pos", "gap", "loss_mask"):  # pos/gap stay per document
      np.testing.assert_array_equal(packed[f][r, o : o + k], flat[f][i, :k])
  # Segments are numbered 1.. from the left of each row; padding only at the end.
  for row in packed["segment_ids"]:
    real_row = row[row > 0]
    assert (np.diff(real_row) >= 0).all() and (np.diff(real_row) <= 1).all() and real_row[0] == 1
    assert (row[len(real_row) :] == 0).all()
  assert (packed["tokens"][packed["segment_ids"] == 0] == SP["pad"]).all()


def test_a_worked_example_literally():
  """PSM, window [BOS] a b c d e [EOS] at document start, middle [c d]: what the model sees."""
  B, E, M, I, O = SP["bos"], SP["eos"], SP["mask"], SP["mid"], SP["eom"]
  a, b, c, d, e = 10, 11, 12, 13, 14
  ex = fim.fim_example([B, a, b, c, d, e, E], 3, 2, fim.PSM, SP, positions="continued")
  assert ex["tokens"] == [B, a, b, M, e, E, I, c, d]
  assert ex["targets"] == [a, b, M, e, E, I, c, d, O]
  assert ex["pos"] == [0, 1, 2, 3, 4, 5, 3, 4, 5]  # suffix collapsed onto MASK; middle continues
  assert ex["gap"] == [0, 0, 0, 0, 0, 0, 1, 2, 3]
  assert ex["loss_mask"] == [1, 1, 0, 1, 1, 0, 1, 1, 1]  # no loss on MASK and MID as targets
  assert fim.fim_example([B, a, b, c, d, e, E], 3, 2, fim.PSM, SP, positions="collapsed")[
    "pos"
  ] == [0, 1, 2, 3, 4, 5, 3, 3, 3]
  assert fim.fim_example([B, a, b, c, d, e, E], 3, 2, fim.PSM, SP, positions="sequential")[
    "pos"
  ] == list(range(9))
  spm = fim.fim_example([B, a, b, c, d, e, E], 3, 2, fim.SPM, SP, positions="continued")
  assert spm["tokens"] == [M, e, E, B, a, b, I, c, d]
  assert spm["pos"] == [3, 4, 5, 0, 1, 2, 3, 4, 5]  # each token keeps its (pos, gap)
  assert spm["loss_mask"] == [1, 1, 0, 1, 1, 0, 1, 1, 1]  # E -> B: where a window starts


def structured_docs():
  """Workflows at one token per byte with their structure marks (so line / YAML holes are cut),
  then documents of the boundary LENGTHS without marks (their structure holes fall back)."""
  return byte_docs([synthetic.generate(i) for i in range(8)], plain=make_docs(LENGTHS, seed=5))


@pytest.mark.parametrize("policy", fim.SPAN_POLICIES)
@pytest.mark.parametrize("positions", fim.POSITIONS)
def test_vectorised_examples_equal_the_reference(policy, positions):
  """Property: every window of three epochs (thousands: AR, PSM, SPM; at document starts and
  ends) builds the same example vectorised as `fim_example` builds it one at a time."""
  docs = structured_docs()
  table = fim.WindowTable(docs.lengths, L)
  eom_weight = 2.5
  cfg = fim.FimConfig(
    rate=0.8,
    span_policy=policy,
    spm_rate=0.3,
    positions=positions,
    mix=(1.0,) * len(holes.KINDS),
    max_lines=3,
    eom_weight=eom_weight,
    seed=3,
  )
  checked, kinds = 0, set()
  for epoch in (1, 2, 3):
    rows, meta = rows_for(docs, cfg, epoch=epoch, table=table)
    kinds.update(meta["kind"].tolist())
    for i in range(len(meta["doc"])):
      w = ext(docs, meta["doc"][i])[meta["start"][i] :][: meta["n"][i]]
      ref = fim.fim_example(
        w,
        int(meta["g"][i]),
        int(meta["m"][i]),
        int(meta["kind"][i]),
        SP,
        start=int(meta["start"][i]),
        positions=positions,
        eom_weight=eom_weight,
      )
      k = meta["lengths"][i]
      for f in ("tokens", "targets", "pos", "gap", "loss_mask"):
        np.testing.assert_array_equal(rows[f][i, :k], ref[f], err_msg=f"{f} of example {i}")
      checked += 1
  assert checked >= 1000 and kinds == {fim.AR, fim.PSM, fim.SPM}
