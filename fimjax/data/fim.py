"""Pure-numpy windowing, AR / FIM example construction and packing (vectorised, batch-level).

Windows. A document is seen as `[BOS] + doc + [EOS]` (E = len + 2 tokens, "extended" coordinates;
`pos` is the extended position). Its E - 1 next-token transitions are tiled by windows of at most
T = L - 3 transitions, i.e. at most W = L - 2 tokens; consecutive windows share one token (the last
of one is the first of the next), so every token is in some window and, in AR, every token but BOS
is a target exactly once per epoch. Cut points move by an epoch-dependent pseudo-random offset `o`
(`jT - o`, clipped to the document); each document's window count is fixed across epochs (o is
drawn from a static range per document, chosen so no window is ever empty), so an epoch has a
static number of windows. A document that fits in one window is always one window.

Examples (length L, see docs/interfaces.md; `fim_example` is the readable one-example version,
`build_examples` the vectorised one, and a test checks they agree). AR: tokens = w[:-1],
targets = w[1:], pos = s + j. FIM with middle w[g:g+m] (where: `fimjax.data.holes`; BOS and EOS are
never in the middle):
  PSM: prefix, MASK, suffix, MID, middle      (targets: next token; middle's last target EOM)
  SPM: MASK, suffix, prefix, MID, middle
pos: prefix and suffix keep document order with the span collapsed to MASK's position p = s + g
(the suffix does not reveal the hole's length); MID and the middle by `fim.positions`:
  collapsed   all at p                 (RoPE cannot tell which middle token came last)
  continued   MID at p, middle i at p + 1 + i   (previous token at distance 1 everywhere, and the
              prefix's end at distance 1 from MID)
  sequential  every cell at s + its index in the sequence (StarCoder/CodeLlama FIM; SPM too)
gap: 0 before MID, then 1 (MID), 2, 3, ... along the middle. In collapsed/continued each token
keeps the same (pos, gap) in PSM and SPM; only the order differs. No loss on the targets MASK and
MID (random sentinels) nor, in SPM, on prefix[0] (it follows the suffix: where the window starts
is not predictable); EOM targets weigh `fim.eom_weight`. All randomness is a hash of (seed,
epoch, window index): a pure function.

Packing. `place` puts examples into rows: one per row, or first-fit decreasing into rows of L with
a seeded row shuffle; `to_rows` scatters them with `segment_ids` 1, 2, ... per row.
"""

import dataclasses

import numpy as np

from fimjax.data import holes as holes_lib
from fimjax.data import rand
from fimjax.data.rand import below, hash_u64, uniform

SPECIAL_NAMES = ("pad", "bos", "eos", "mask", "mid", "eom")
SPAN_POLICIES = holes_lib.POLICIES
POSITIONS = ("collapsed", "continued", "sequential")
AR, PSM, SPM = 0, 1, 2
FIELDS = ("tokens", "targets", "pos", "gap", "loss_mask", "segment_ids")
DTYPES = {
  "tokens": np.int32,
  "targets": np.int32,
  "pos": np.int32,
  "gap": np.int32,
  "loss_mask": np.float32,
  "segment_ids": np.int32,
}


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
    o = self.o_lo[d] + below(hash_u64(seed, epoch, d, rand.S_OFFSET), self.o_n[d])
    nt = self.nt[d]
    a = np.clip(j * self.T - o, 0, nt)
    b = np.clip((j + 1) * self.T - o, 0, nt)
    return d, a, b - a + 1


@dataclasses.dataclass(frozen=True)
class FimConfig:
  """What `fim` in the config says about building examples (hashable, picklable)."""

  rate: float = 0.5
  span_policy: str = "split"
  max_span: int = 64
  spm_rate: float = 0.0
  seed: int = 0
  positions: str = "continued"
  mix: tuple = (0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # weights in holes.KINDS order (mixed)
  max_lines: int = 1
  eom_weight: float = 1.0

  @classmethod
  def from_config(cls, fim, **overrides) -> "FimConfig":
    if fim.span_policy not in SPAN_POLICIES:
      raise ValueError(f"fim.span_policy must be one of {SPAN_POLICIES}, got {fim.span_policy!r}")
    if fim.positions not in POSITIONS:
      raise ValueError(f"fim.positions must be one of {POSITIONS}, got {fim.positions!r}")
    mix = tuple(float(fim.mix.get(k, 0.0)) for k in holes_lib.KINDS)
    unknown = sorted(set(fim.mix) - set(holes_lib.KINDS))
    if unknown or min(mix) < 0 or (fim.span_policy == "mixed" and sum(mix) <= 0):
      raise ValueError(
        f"fim.mix={dict(fim.mix)} must give weights >= 0 (not all 0) to hole kinds "
        f"among {holes_lib.KINDS}"
      )
    cfg = cls(
      float(fim.rate),
      str(fim.span_policy),
      int(fim.max_span),
      float(fim.spm_rate),
      int(fim.seed),
      str(fim.positions),
      mix,
      int(fim.max_lines),
      float(fim.eom_weight),
    )
    return dataclasses.replace(cfg, **overrides)


def sample_fim(cfg: FimConfig, epoch, ids, start, n, docs, d):
  """(kind, g, m, hole) per window: AR/PSM/SPM, the middle w[g:g+m] in window coordinates and
  the hole kind it was cut by (index in holes.KINDS; -1 for AR). `docs` are the documents
  (lengths and structure marks) and `d` each window's document."""
  ids = np.atleast_1d(np.asarray(ids))
  start, n, d = (np.asarray(a, np.int64) for a in (start, n, d))
  epoch = np.broadcast_to(np.asarray(epoch, np.int64), ids.shape)
  lo = (start == 0).astype(np.int64)  # BOS stays in the prefix
  eos = start + n == np.asarray(docs.lengths)[d] + 2  # EOS stays in the suffix
  hi = n - eos
  fim = (uniform(hash_u64(cfg.seed, epoch, ids, rand.S_FIM)) < cfg.rate) & (hi - lo >= 1)
  spm = fim & (uniform(hash_u64(cfg.seed, epoch, ids, rand.S_SPM)) < cfg.spm_rate)
  g, m, hole = np.zeros_like(n), np.zeros_like(n), np.full(n.shape, -1, np.int64)
  at = np.flatnonzero(fim)
  if len(at):
    g[at], m[at], hole[at] = holes_lib.sample_holes(
      cfg, epoch[at], ids[at], docs, d[at], start[at], n[at], lo[at], hi[at], eos[at]
    )
  kind = np.where(fim, np.where(spm, SPM, PSM), AR)
  return kind, g, m, hole


def middle_pos_step(positions: str) -> int:
  """How `pos` moves from one middle token to the next (MID and the sampler's decode steps)."""
  return 0 if positions == "collapsed" else 1


def fim_example(
  window,
  g: int,
  m: int,
  kind: int,
  special_ids: dict,
  *,
  start: int = 0,
  positions: str = "continued",
  eom_weight: float = 1.0,
) -> dict:
  """One example, plainly (the reference `build_examples` must equal): lists `tokens`, `targets`,
  `pos`, `gap`, `loss_mask` (inputs and their next-token targets).

  `window` is a run of the extended document (`[BOS] doc [EOS]`) starting at extended position
  `start`; the middle is window[g:g+m] (AR when kind == AR). The sampler's prompts are these
  inputs up to MID, with an empty middle (`m=0`).
  """
  sp, w = special_ids, list(window)
  if kind == AR:
    return {
      "tokens": w[:-1],
      "targets": w[1:],
      "pos": list(range(start, start + len(w) - 1)),
      "gap": [0] * (len(w) - 1),
      "loss_mask": [1.0] * (len(w) - 1),
    }
  prefix, middle, suffix = w[:g], w[g : g + m], w[g + m :]
  p = start + g  # the hole's (MASK's) document position
  pre = [(t, start + i) for i, t in enumerate(prefix)]
  mask_and_suffix = [(sp["mask"], p)] + [(t, p + 1 + i) for i, t in enumerate(suffix)]
  front = pre + mask_and_suffix if kind == PSM else mask_and_suffix + pre
  step = middle_pos_step(positions)
  back = [(t, p + i * step) for i, t in enumerate([sp["mid"]] + middle + [sp["eom"]])]
  cells = front + back
  tokens = [t for t, _ in cells]
  pos = [x for _, x in cells]
  if positions == "sequential":
    pos = list(range(start, start + len(cells)))
  gap = [0] * len(front) + list(range(1, len(back) + 1))
  targets = tokens[1:]
  loss = [
    0.0 if t in (sp["mask"], sp["mid"]) else eom_weight if t == sp["eom"] else 1.0 for t in targets
  ]
  if kind == SPM and g > 0:
    loss[len(mask_and_suffix) - 1] = 0.0  # prefix[0] after the suffix: where a window starts
  return {
    "tokens": tokens[:-1],
    "targets": targets,
    "pos": pos[:-1],
    "gap": gap[:-1],
    "loss_mask": loss,
  }


def build_examples(
  tokens,
  doc_starts,
  doc_lengths,
  doc,
  start,
  n,
  kind,
  g,
  m,
  special_ids,
  *,
  positions: str = "continued",
  eom_weight: float = 1.0,
):
  """Ragged examples: dict of flat input-cell arrays + `example`, `index`, and `lengths` [E].

  The vectorised `fim_example` of a chunk (a test checks they agree). `tokens` is the flat token
  array (memmap is fine); doc d is tokens[doc_starts[d]:][:len]. Suffixes: `_E` per example,
  `_C` per cell (an example's sequence plus one cell for its last target), `_I` per input cell.
  """
  sp = special_ids
  doc_E, start_E, n_E = (np.asarray(a, np.int64) for a in (doc, start, n))
  kind_E, g_E, m_E = (np.asarray(a, np.int64) for a in (kind, g, m))
  fim_E = kind_E != AR
  cells_E = np.where(fim_E, n_E + 3, n_E)  # + MASK, MID, EOM
  first_E = np.cumsum(cells_E) - cells_E
  ex_C = np.repeat(np.arange(len(n_E)), cells_E)  # each cell's example
  j_C = np.arange(ex_C.size, dtype=np.int64) - first_E[ex_C]  # its index in the example
  s_C, g_C, m_C, n_C, kind_C = (a[ex_C] for a in (start_E, g_E, m_E, n_E, kind_E))
  fim_C, spm_C = kind_C != AR, kind_C == SPM
  mid_C = n_C - m_C + 1  # index of MID
  suf_C = n_C - g_C - m_C  # suffix length
  # Window index (src) of each cell, -1 for sentinels; pos and gap.
  src_mid_C = g_C + j_C - mid_C - 1
  src_psm_C = np.where(j_C < g_C, j_C, j_C - 1 + m_C)
  src_spm_C = np.where(j_C <= suf_C, g_C + m_C + j_C - 1, j_C - 1 - suf_C)
  src_C = np.where(j_C < mid_C, np.where(spm_C, src_spm_C, src_psm_C), src_mid_C)
  special_C = np.full(ex_C.size, -1, np.int64)
  special_C[fim_C & (j_C < mid_C) & np.where(spm_C, j_C == 0, j_C == g_C)] = sp["mask"]
  special_C[fim_C & (j_C == mid_C)] = sp["mid"]
  special_C[fim_C & (j_C == n_C + 2)] = sp["eom"]
  src_C = np.where(fim_C, src_C, j_C)
  # PSM front cells sit at s + j (the suffix collapsed onto MASK's position); SPM moves them.
  spm_pos_C = np.where(
    j_C == 0, s_C + g_C, np.where(j_C <= suf_C, s_C + g_C + j_C, s_C + j_C - 1 - suf_C)
  )
  mid_pos_C = s_C + g_C + middle_pos_step(positions) * (j_C - mid_C)
  pos_C = np.where(fim_C & (j_C >= mid_C), mid_pos_C, np.where(spm_C, spm_pos_C, s_C + j_C))
  if positions == "sequential":
    pos_C = s_C + j_C
  gap_C = np.where(fim_C & (j_C >= mid_C), j_C - mid_C + 1, 0)
  # Tokens: content through the flat array, BOS/EOS at the document ends, sentinels.
  x_C = s_C + src_C  # extended document position
  ext_len_C = np.asarray(doc_lengths, np.int64)[doc_E][ex_C] + 2
  flat_C = np.clip(
    np.asarray(doc_starts, np.int64)[doc_E][ex_C] + x_C - 1, 0, max(len(tokens) - 1, 0)
  )
  tok_C = np.asarray(tokens[flat_C]).astype(np.int64) if len(tokens) else np.zeros_like(flat_C)
  tok_C = np.where(x_C == 0, sp["bos"], np.where(x_C == ext_len_C - 1, sp["eos"], tok_C))
  tok_C = np.where(special_C >= 0, special_C, tok_C)
  # Inputs are every cell but the last of each example; targets are the next cell.
  inp_I = np.flatnonzero(j_C < cells_E[ex_C] - 1)
  tgt_I = tok_C[inp_I + 1]
  loss_I = ((tgt_I != sp["mask"]) & (tgt_I != sp["mid"])).astype(np.float32)
  spm_first_I = spm_C[inp_I] & (j_C[inp_I] == suf_C[inp_I]) & (g_C[inp_I] > 0)
  loss_I[spm_first_I] = 0.0  # SPM: prefix[0] follows the suffix, its start is not predictable
  loss_I[fim_C[inp_I] & (tgt_I == sp["eom"])] = eom_weight
  return {
    "tokens": tok_C[inp_I].astype(np.int32),
    "targets": tgt_I.astype(np.int32),
    "pos": pos_C[inp_I].astype(np.int32),
    "gap": gap_C[inp_I].astype(np.int32),
    "loss_mask": loss_I,
    "example": ex_C[inp_I],
    "index": j_C[inp_I],
    "lengths": cells_E - 1,
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
    r = int(np.argmax(rem[: nrows + 1] >= ln))  # rem[nrows] is a fresh row: always fits
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
  return {
    k: np.full((num_rows, context), pad_id if k in ("tokens", "targets") else 0, DTYPES[k])
    for k in FIELDS
  }


def to_rows(ex: dict, row, offset, segment, num_rows: int, context: int, pad_id: int) -> dict:
  """Scatter ragged examples into [num_rows, context] arrays (padding as in the contract)."""
  e = ex["example"]
  dest = row[e] * context + offset[e] + ex["index"]
  out = pad_rows(num_rows, context, pad_id)
  for k, a in out.items():
    a.reshape(-1)[dest] = segment[e] if k == "segment_ids" else ex[k]
  return out


def make_rows(
  docs,
  table: WindowTable,
  cfg: FimConfig,
  codes: np.ndarray,
  special_ids: dict,
  *,
  seed: int,
  pack: bool,
  num_windows: int | None = None,
  meta: bool = False,
):
  """Rows for stream codes (epoch * num_windows + window id): windows, FIM, placement.

  Window cut points use `seed` (train.seed); FIM uses cfg.seed. With `meta`, also returns
  per-example dict (doc, start, n, kind, g, m, hole, row, lengths).
  """
  codes = np.asarray(codes, np.int64)
  nw = num_windows or table.num_windows
  epoch, ids = np.divmod(codes, nw)
  d, start, n = table.spans(ids, epoch, seed)
  kind, g, m, hole = sample_fim(cfg, epoch, ids, start, n, docs, d)
  ex = build_examples(
    docs.tokens,
    docs.starts,
    docs.lengths,
    d,
    start,
    n,
    kind,
    g,
    m,
    special_ids,
    positions=cfg.positions,
    eom_weight=cfg.eom_weight,
  )
  key = int(hash_u64(seed, 0, codes[:1], rand.S_ROWS)[0]) if len(codes) else 0
  row, off, seg, nrows = place(ex["lengths"], table.context, pack=pack, seed=key)
  rows = to_rows(ex, row, off, seg, nrows, table.context, special_ids["pad"])
  if not meta:
    return rows
  return rows, {
    "doc": d,
    "start": start,
    "n": n,
    "kind": kind,
    "g": g,
    "m": m,
    "hole": hole,
    "row": row,
    "offset": off,
    "lengths": ex["lengths"],
    "epoch": epoch,
    "window": ids,
  }
