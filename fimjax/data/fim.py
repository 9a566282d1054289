"""Pure-numpy windowing, AR / FIM example construction and packing (vectorised, batch-level).

Windows. A document is seen as `[BOS] + doc + [EOS]` (E = len + 2 tokens, "extended" coordinates;
`pos` is the extended position). Its E - 1 next-token transitions are tiled by windows of at most
T = L - 3 transitions, i.e. at most W = L - 2 tokens; consecutive windows share one token (the last
of one is the first of the next), so every token is in some window and, in AR, every token but BOS
is a target exactly once per epoch. Cut points move by an epoch-dependent pseudo-random offset `o`
(`jT - o`, clipped to the document); each document's window count is fixed across epochs (o is
drawn from a static range per document, chosen so no window is ever empty), so an epoch has a
static number of windows. A document that fits in one window is always one window.

Examples (length L, see docs/interfaces.md). AR: tokens = w[:-1], targets = w[1:], pos = s + j.
FIM with middle w[g:g+m] (span inside the window's content: BOS and EOS are never in the middle):
  PSM: prefix, MASK, suffix, MID, middle      (targets: next token; middle's last target EOM)
  SPM: MASK, suffix, prefix, MID, middle
pos: prefix/suffix keep document order with the span collapsed to the MASK position s + g, MID and
middle carry s + g; gap: 0 before MID, then 1 (MID), 2, 3, ... along the middle. Each token keeps the
same (pos, gap) in PSM and SPM; only the order differs. No loss on the targets MASK and MID (random
sentinels) nor, in SPM, on prefix[0] (it follows the suffix: where the window starts is not
predictable). All randomness is a hash of (seed, epoch, window index): a pure function.

Packing. `place` puts examples into rows: one per row, or first-fit decreasing into rows of L with
a seeded row shuffle; `to_rows` scatters them with `segment_ids` 1, 2, ... per row.
"""

import dataclasses

import numpy as np

SPECIAL_NAMES = ("pad", "bos", "eos", "mask", "mid", "eom")
SPAN_POLICIES = ("token", "uniform", "split")
AR, PSM, SPM = 0, 1, 2
FIELDS = ("tokens", "targets", "pos", "gap", "loss_mask", "segment_ids")
DTYPES = {"tokens": np.int32, "targets": np.int32, "pos": np.int32, "gap": np.int32,
          "loss_mask": np.float32, "segment_ids": np.int32}

# Hash streams: independent uniforms per (seed, epoch, index).
_S_OFFSET, _S_FIM, _S_SPM, _S_G, _S_M, _S_ROWS = range(1, 7)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
  """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
  x = x ^ (x >> np.uint64(30))
  x = x * _M1
  x = x ^ (x >> np.uint64(27))
  x = x * _M2
  return x ^ (x >> np.uint64(31))


def hash_u64(seed: int, epoch: int | np.ndarray, index: np.ndarray, stream: int) -> np.ndarray:
  """A uint64 hash per element of (seed, epoch, index, stream); epoch may be an array."""
  index = np.atleast_1d(np.asarray(index)).astype(np.uint64)
  epoch = np.asarray(epoch).astype(np.uint64)
  key = np.array([(seed + stream * int(_GOLDEN)) % 2**64], np.uint64)
  x = _mix(_mix(_mix(key) + epoch * _GOLDEN + np.uint64(1)) ^ (index * _GOLDEN + np.uint64(2)))
  return x


def below(h: np.ndarray, n) -> np.ndarray:
  """Uniform ints in [0, n) (n >= 1, broadcast) from uint64 hashes."""
  u = (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)
  return np.minimum((u * n).astype(np.int64), np.asarray(n, np.int64) - 1)


def uniform(h: np.ndarray) -> np.ndarray:
  return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


class WindowTable:
  """Static windows of a document set; `spans(ids, epoch, seed)` gives their epoch's cut points.

  `shift=False`: fixed cut points (offset 0, ceil((E-1)/T) windows per document), for evaluation.
  """

  def __init__(self, doc_lengths: np.ndarray, context: int, *, shift: bool = True):
    if context < 4:
      raise ValueError(f"context must be >= 4, got {context}")
    self.context, self.T = context, context - 3
    T = self.T
    self.nt = np.asarray(doc_lengths, np.int64) + 1  # transitions of [BOS]+doc+[EOS]
    m = (self.nt + T - 1) // T
    if shift:
      r = m * T - self.nt  # slack of the unshifted tiling, in [0, T)
      fewer = (m == 1) | (r + 1 >= T - 1 - r)  # keep m windows (o <= r) or use m+1 (o > r)
      self.count = np.where(fewer, m, m + 1)
      self.o_lo = np.where(fewer, 0, r + 1)
      self.o_n = np.where(m == 1, 1, np.where(fewer, r + 1, T - 1 - r))
    else:
      self.count, self.o_lo, self.o_n = m, np.zeros_like(m), np.ones_like(m)
    self.first = np.cumsum(self.count) - self.count
    self.num_windows = int(self.count.sum())
    self.doc = np.repeat(np.arange(len(m), dtype=np.int64), self.count)
    self.j = np.arange(self.num_windows, dtype=np.int64) - self.first[self.doc]

  def spans(self, ids, epoch, seed: int):
    """(doc, start, n) of windows `ids` in `epoch`: extended tokens [start, start + n) of doc."""
    ids = np.asarray(ids, np.int64)
    d, j = self.doc[ids], self.j[ids]
    o = self.o_lo[d] + below(hash_u64(seed, epoch, d, _S_OFFSET), self.o_n[d])
    nt = self.nt[d]
    a = np.clip(j * self.T - o, 0, nt)
    b = np.clip((j + 1) * self.T - o, 0, nt)
    return d, a, b - a + 1


@dataclasses.dataclass(frozen=True)
class FimConfig:
  rate: float = 0.5
  span_policy: str = "split"
  max_span: int = 64
  spm_rate: float = 0.0
  seed: int = 0

  @classmethod
  def from_config(cls, fim) -> "FimConfig":
    if fim.span_policy not in SPAN_POLICIES:
      raise ValueError(f"fim.span_policy must be one of {SPAN_POLICIES}, got {fim.span_policy!r}")
    return cls(float(fim.rate), str(fim.span_policy), int(fim.max_span), float(fim.spm_rate),
               int(fim.seed))


def sample_fim(cfg: FimConfig, epoch, ids, start, n, ext_len):
  """(kind, g, m) per window: AR/PSM/SPM and the middle w[g:g+m] in window coordinates."""
  ids = np.asarray(ids)
  lo = (start == 0).astype(np.int64)  # BOS stays in the prefix
  hi = n - (start + n == ext_len)  # EOS stays in the suffix
  c = hi - lo
  fim = (uniform(hash_u64(cfg.seed, epoch, ids, _S_FIM)) < cfg.rate) & (c >= 1)
  spm = fim & (uniform(hash_u64(cfg.seed, epoch, ids, _S_SPM)) < cfg.spm_rate)
  cc = np.maximum(c, 1)
  hg, hm = hash_u64(cfg.seed, epoch, ids, _S_G), hash_u64(cfg.seed, epoch, ids, _S_M)
  if cfg.span_policy == "token":
    m = np.ones_like(cc)
    g = below(hg, cc)
  elif cfg.span_policy == "uniform":
    m = 1 + below(hm, np.minimum(cfg.max_span, cc))
    g = below(hg, cc - m + 1)
  else:  # split: two distinct uniform cut points in [0, c]
    x = below(hg, cc + 1)
    y = below(hm, cc)
    y = y + (y >= x)
    g, m = np.minimum(x, y), np.abs(x - y)
  kind = np.where(fim, np.where(spm, SPM, PSM), AR)
  return kind, np.where(fim, g + lo, 0), np.where(fim, m, 0)


def build_examples(tokens, doc_starts, doc_lengths, doc, start, n, kind, g, m, special_ids):
  """Ragged examples: dict of flat input-cell arrays + `example`, `index`, and `lengths` [C].

  `tokens` is the flat token array (memmap is fine); doc d is tokens[doc_starts[d]:][:len].
  """
  sp = special_ids
  doc, start, n = (np.asarray(a, np.int64) for a in (doc, start, n))
  kind, g, m = (np.asarray(a, np.int64) for a in (kind, g, m))
  fim = kind != AR
  ext = np.where(fim, n + 3, n)  # cells: the sequence plus one extra cell for the last target
  first = np.cumsum(ext) - ext
  e = np.repeat(np.arange(len(n)), ext)
  j = np.arange(e.size, dtype=np.int64) - first[e]
  s, g_, m_, n_, k_ = start[e], g[e], m[e], n[e], kind[e]
  q = n_ - m_ + 1  # index of MID
  suf = n_ - g_ - m_  # suffix length
  # Window index (src) of each cell, -1 for sentinels; pos and gap.
  src_mid = g_ + j - q - 1
  src_psm = np.where(j < g_, j, j - 1 + m_)
  src_spm = np.where(j <= suf, g_ + m_ + j - 1, j - 1 - suf)
  front = np.where(k_ == SPM, src_spm, src_psm)
  src = np.where(j < q, front, src_mid)
  special = np.full(e.size, -1, np.int64)
  fimc = k_ != AR
  special[fimc & (j < q) & np.where(k_ == SPM, j == 0, j == g_)] = sp["mask"]
  special[fimc & (j == q)] = sp["mid"]
  special[fimc & (j == n_ + 2)] = sp["eom"]
  src = np.where(fimc, src, j)
  spm_pos = np.where(j == 0, s + g_, np.where(j <= suf, s + g_ + j, s + j - 1 - suf))
  pos = np.where(fimc & (j >= q), s + g_, np.where(k_ == SPM, spm_pos, s + j))
  gap = np.where((k_ != AR) & (j >= q), j - q + 1, 0)
  # Tokens: content through the flat array, BOS/EOS at the document ends, sentinels.
  x = s + src
  E = np.asarray(doc_lengths, np.int64)[doc][e] + 2
  flat = np.clip(np.asarray(doc_starts, np.int64)[doc][e] + x - 1, 0, max(len(tokens) - 1, 0))
  tok = np.asarray(tokens[flat]).astype(np.int64) if len(tokens) else np.zeros_like(flat)
  tok = np.where(x == 0, sp["bos"], np.where(x == E - 1, sp["eos"], tok))
  tok = np.where(special >= 0, special, tok)
  # Inputs are every cell but the last of each example; targets are the next cell.
  inp = np.flatnonzero(j < ext[e] - 1)
  tgt = tok[inp + 1]
  loss = (tgt != sp["mask"]) & (tgt != sp["mid"])
  loss &= ~((k_[inp] == SPM) & (j[inp] == suf[inp]) & (g_[inp] > 0))  # SPM: prefix[0]
  return {
      "tokens": tok[inp].astype(np.int32), "targets": tgt.astype(np.int32),
      "pos": pos[inp].astype(np.int32), "gap": gap[inp].astype(np.int32),
      "loss_mask": loss.astype(np.float32), "example": e[inp], "index": j[inp],
      "lengths": ext - 1,
  }


def place(lengths: np.ndarray, context: int, *, pack: bool, seed: int = 0):
  """(row, offset, segment, num_rows) per example: one per row, or packed first-fit decreasing.

  Packed rows are shuffled with `seed` so that a batch does not hold only long or only short
  examples.
  """
  lengths = np.asarray(lengths, np.int64)
  c = len(lengths)
  if not pack:
    return np.arange(c), np.zeros(c, np.int64), np.ones(c, np.int64), c
  row, off, seg = (np.empty(c, np.int64) for _ in range(3))
  rem = np.empty(c + 1, np.int64)
  used = np.zeros(c + 1, np.int64)
  rem[0], nrows = context, 0
  for i in np.argsort(-lengths, kind="stable").tolist():
    ln = lengths[i]
    r = int(np.argmax(rem[:nrows + 1] >= ln))  # rem[nrows] is a fresh row: always fits
    if r == nrows:
      nrows += 1
      rem[nrows] = context
    row[i], off[i] = r, context - rem[r]
    rem[r] -= ln
    used[r] += 1
    seg[i] = used[r]
  perm = np.random.default_rng([seed & (2**63 - 1), c]).permutation(nrows)
  return perm[row], off, seg, nrows


def pad_rows(num_rows: int, context: int, pad_id: int) -> dict:
  """[num_rows, context] rows of padding only."""
  return {k: np.full((num_rows, context), pad_id if k in ("tokens", "targets") else 0, DTYPES[k])
          for k in FIELDS}


def to_rows(ex: dict, row, offset, segment, num_rows: int, context: int, pad_id: int) -> dict:
  """Scatter ragged examples into [num_rows, context] arrays (padding as in the contract)."""
  e = ex["example"]
  dest = row[e] * context + offset[e] + ex["index"]
  out = pad_rows(num_rows, context, pad_id)
  for k, a in out.items():
    a.reshape(-1)[dest] = segment[e] if k == "segment_ids" else ex[k]
  return out


def make_rows(docs, table: WindowTable, cfg: FimConfig, codes: np.ndarray, special_ids: dict,
              *, seed: int, pack: bool, num_windows: int | None = None, meta: bool = False):
  """Rows for stream codes (epoch * num_windows + window id): windows, FIM, placement.

  Window cut points use `seed` (train.seed); FIM uses cfg.seed. With `meta`, also returns
  per-example dict (doc, start, n, kind, g, m, row, lengths).
  """
  codes = np.asarray(codes, np.int64)
  nw = num_windows or table.num_windows
  epoch, ids = np.divmod(codes, nw)
  d, start, n = table.spans(ids, epoch, seed)
  ext_len = docs.lengths[d] + 2
  kind, g, m = sample_fim(cfg, epoch, ids, start, n, ext_len)
  ex = build_examples(docs.tokens, docs.starts, docs.lengths, d, start, n, kind, g, m,
                      special_ids)
  key = int(hash_u64(seed, 0, codes[:1], _S_ROWS)[0]) if len(codes) else 0
  row, off, seg, nrows = place(ex["lengths"], table.context, pack=pack, seed=key)
  rows = to_rows(ex, row, off, seg, nrows, table.context, special_ids["pad"])
  if not meta:
    return rows
  return rows, {"doc": d, "start": start, "n": n, "kind": kind, "g": g, "m": m, "row": row,
                "offset": off, "lengths": ex["lengths"], "epoch": epoch, "window": ids}
