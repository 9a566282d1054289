"""Where the middle of a FIM example is cut: span policies, vectorised over a chunk of windows.

A window's content cells are [lo, hi) (BOS stays in the prefix, EOS in the suffix); a hole is
[g, g + m) with lo <= g and g + m <= hi, m >= 1. Kinds (`KINDS`):

  token    one token                       uniform  1..max_span tokens, anywhere
  split    two uniform cut points (Bavarian et al. 2022)
  line     1..max_lines whole lines: from a TEXT mark (a line that is not blank) to the k-th
           next LINE mark (or the document end)
  value    a YAML value      step  a list item that is a mapping      block  a `key:` block
  yaml     any of value / step / block, uniformly over the window's nodes

The structure kinds read the cache's marks (`fimjax.data.structure`); a window without a
candidate of its kind (TCT caches have none) gets a `split` hole instead. `mixed` draws the kind
per window with the weights of `fim.mix`. Every draw is a hash of (fim.seed, epoch, window).
`hole_reference` is the readable one-window version of the structure kinds; a test checks that
both agree.
"""

import numpy as np

from fimjax.data import rand
from fimjax.data import structure

KINDS = ("token", "uniform", "split", "line", "value", "step", "block", "yaml")
POLICIES = KINDS + ("mixed",)
TOKEN, UNIFORM, SPLIT, LINE, VALUE, STEP, BLOCK, YAML = range(len(KINDS))
NODE_FLAGS = {
  VALUE: structure.VALUE,
  STEP: structure.STEP,
  BLOCK: structure.BLOCK,
  YAML: structure.VALUE | structure.STEP | structure.BLOCK,
}


def draw_kinds(cfg, epoch, ids) -> np.ndarray:
  """The kind (index in KINDS) each window's hole is cut by, before any fallback."""
  if cfg.span_policy != "mixed":
    return np.full(len(ids), KINDS.index(cfg.span_policy), np.int64)
  w = np.asarray(cfg.mix, np.float64)
  cum = np.cumsum(w) / w.sum()
  u = rand.uniform(rand.hash_u64(cfg.seed, epoch, ids, rand.S_KIND))
  return np.minimum(np.searchsorted(cum, u, side="right"), len(KINDS) - 1)


def random_spans(kind, c, hg, hm, max_span: int):
  """(g, m) relative to lo for the random kinds (token / uniform / split), c >= 1 content cells."""
  m_tok, g_tok = np.ones_like(c), rand.below(hg, c)
  m_uni = 1 + rand.below(hm, np.minimum(max_span, c))
  g_uni = rand.below(hg, c - m_uni + 1)
  x = rand.below(hg, c + 1)
  y = rand.below(hm, c)
  y = y + (y >= x)
  g_spl, m_spl = np.minimum(x, y), np.abs(x - y)
  g = np.select([kind == TOKEN, kind == UNIFORM], [g_tok, g_uni], g_spl)
  m = np.select([kind == TOKEN, kind == UNIFORM], [m_tok, m_uni], m_spl)
  return g, m


def window_cells(docs, d, start, n):
  """Per cell of the windows (doc d, extended start, n cells): window index e, cell j, and the
  structure flags / span of the token there (0 for BOS, EOS and documents without marks)."""
  first = np.cumsum(n) - n
  e = np.repeat(np.arange(len(n)), n)
  j = np.arange(e.size, dtype=np.int64) - first[e]
  x = start[e] + j
  content = (x >= 1) & (x <= docs.lengths[d][e])
  if docs.flags is None or not e.size:
    zeros = np.zeros(e.size, np.int64)
    return e, j, zeros, zeros
  flat = np.where(content, docs.starts[d][e] + x - 1, 0)
  fl = np.where(content, np.asarray(docs.flags[flat]), 0).astype(np.int64)
  sp = np.where(content, np.asarray(docs.span[flat]), 0).astype(np.int64)
  return e, j, fl, sp


def structured_holes(docs, d, start, n, lo, hi, eos, kind, h_pick, h_lines, max_lines: int):
  """(g, m, found) for windows whose kind is a structure kind (see module doc)."""
  w = len(d)
  e, j, fl, sp = window_cells(docs, d, start, n)
  inside = (j >= lo[e]) & (j < hi[e])
  node_mask = np.zeros(len(KINDS), np.int64)
  for k, f in NODE_FLAGS.items():
    node_mask[k] = f
  is_line = kind == LINE
  cand = inside & ((fl & node_mask[kind][e]) != 0) & (sp > 0) & (j + sp <= hi[e])
  # Line starts: a TEXT cell with at least one line end after it (a later LINE cell, or the
  # document's end when the window holds EOS).
  li = np.flatnonzero(inside & ((fl & structure.LINE) != 0))
  le = e[li]
  cnt_l = np.bincount(le, minlength=w)
  rank = np.arange(len(li)) - (np.cumsum(cnt_l) - cnt_l)[le]
  ends_after = cnt_l[le] - 1 - rank + eos[le]
  cand[li[(ends_after >= 1) & is_line[le] & ((fl[li] & structure.TEXT) != 0)]] = True
  ci = np.flatnonzero(cand)
  cnt = np.bincount(e[ci], minlength=w)
  found = cnt > 0
  pick = (np.cumsum(cnt) - cnt) + rand.below(h_pick, np.maximum(cnt, 1))
  chosen = ci[np.minimum(pick, max(len(ci) - 1, 0))] if len(ci) else np.zeros(w, np.int64)
  g = np.where(found, j[chosen] if len(ci) else 0, 0)
  m = np.where(found, sp[chosen] if len(ci) else 0, 0)
  if is_line.any() and len(li):
    at = np.minimum(np.searchsorted(li, chosen), len(li) - 1)  # chosen's index among lines
    lines = np.minimum(1 + rand.below(h_lines, max_lines), np.maximum(ends_after[at], 1))
    nxt = np.minimum(at + lines, len(li) - 1)
    inner = rank[at] + lines <= cnt_l - 1  # the k-th line end is a LINE cell, else the doc end
    end = np.where(inner, j[li[nxt]], hi)
    m = np.where(is_line & found, end - g, m)
  return g, m, found


def hole_reference(
  flags, span, lo: int, hi: int, eos: bool, kind: int, h_pick, h_lines, max_lines: int
):
  """One window, plainly: (g, m) of its structure hole, or None when it has no candidate.

  `flags`/`span` are the window's cells (0 at BOS/EOS)."""
  if kind == LINE:
    lines = [c for c in range(lo, hi) if flags[c] & structure.LINE]
    ends = {s: [c for c in lines if c > s] + ([hi] if eos else []) for s in lines}
    cands = [s for s in lines if ends[s] and flags[s] & structure.TEXT]
  else:
    cands = [
      c for c in range(lo, hi) if flags[c] & NODE_FLAGS[kind] and span[c] and c + span[c] <= hi
    ]
  if not cands:
    return None
  g = cands[int(rand.below(h_pick, len(cands))[0])]
  if kind != LINE:
    return g, int(span[g])
  k = min(1 + int(rand.below(h_lines, max_lines)[0]), len(ends[g]))
  return g, ends[g][k - 1] - g


def sample_holes(cfg, epoch, ids, docs, d, start, n, lo, hi, eos):
  """(g, m, kind) per window: middle [g, g + m) in window coordinates and the kind it was cut by
  (after the fallback to split). Windows need hi - lo >= 1."""
  ids = np.asarray(ids)
  kind = draw_kinds(cfg, epoch, ids)
  hg = rand.hash_u64(cfg.seed, epoch, ids, rand.S_G)
  hm = rand.hash_u64(cfg.seed, epoch, ids, rand.S_M)
  g, m = random_spans(kind, hi - lo, hg, hm, cfg.max_span)
  g = g + lo
  sel = np.flatnonzero(kind >= LINE)
  if len(sel):
    epoch_sel = epoch[sel] if np.ndim(epoch) else epoch
    gs, ms, found = structured_holes(
      docs,
      d[sel],
      start[sel],
      n[sel],
      lo[sel],
      hi[sel],
      eos[sel],
      kind[sel],
      rand.hash_u64(cfg.seed, epoch_sel, ids[sel], rand.S_PICK),
      rand.hash_u64(cfg.seed, epoch_sel, ids[sel], rand.S_LINES),
      cfg.max_lines,
    )
    at = sel[found]
    g[at], m[at] = gs[found], ms[found]
    kind[sel[~found]] = SPLIT  # g, m already hold its split hole (random_spans' default)
  return g, m, kind
