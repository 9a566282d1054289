"""Reference forward pass of a fimjax export (`python -m fimjax.export`), in NumPy alone.

The spec a port to another framework follows, written to be read rather than fast: one
sequence at a time, fp32 throughout, no KV cache. config.json's `forward` lists the same steps
and its `inputs` says how `pos` and `gap` are built; `tests/export_test.py` checks these logits
against the JAX model's (max abs diff < 1e-4 in fp32). It reads model.safetensors itself (an
8-byte header length, a JSON header, raw little-endian arrays), so it needs neither jax nor the
safetensors package; bf16 weights are widened to fp32.

  m = load("export/")
  tokens, pos, gap = fim_prompt(prefix_ids, suffix_ids, m.special, m.positions)
  logits = forward(m, tokens, pos, gap)         # [len, vocab_size]
  middle = greedy(m, tokens, pos, gap, infill=True, max_new=64)
"""

import json
import os
import struct

import numpy as np

_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}


class Model:
  """An export: `config` (config.json), `weights` (flat name -> fp32 array), `special` ids."""

  def __init__(self, config: dict, weights: dict):
    self.config, self.weights = config, weights
    self.arch = config["architecture"]
    self.special = config["special_ids"]
    self.positions = config["inputs"]["fim_positions"]


def read_safetensors(path: str) -> dict:
  """{name: fp32 array} of a .safetensors file."""
  with open(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    header, data = json.loads(f.read(n)), f.read()
  out = {}
  for name, t in header.items():
    if name == "__metadata__":
      continue
    start, end = t["data_offsets"]
    a = np.frombuffer(data[start:end], _DTYPES[t["dtype"]]).reshape(t["shape"])
    if t["dtype"] == "BF16":  # bf16 is the upper half of an fp32
      a = (a.astype(np.uint32) << 16).view(np.float32)
    out[name] = a.astype(np.float32)
  return out


def load(path: str) -> Model:
  with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
    config = json.load(f)
  return Model(config, read_safetensors(os.path.join(path, "model.safetensors")))


# ------------------------------------------------------------------------------------ forward


def rms_norm(x, eps: float = 1e-6):
  """Parameter-free RMSNorm over the last axis."""
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def rope(x_LxHxK, pos_L, base: float):
  """Rotary embedding, half-split: dims [0, K/2) pair with [K/2, K)."""
  half = x_LxHxK.shape[-1] // 2
  freq_K2 = base ** (-np.arange(half, dtype=np.float32) / half)
  ang_LxK2 = pos_L.astype(np.float32)[:, None] * freq_K2
  cos, sin = np.cos(ang_LxK2)[:, None, :], np.sin(ang_LxK2)[:, None, :]
  x1, x2 = x_LxHxK[..., :half], x_LxHxK[..., half:]
  return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def attention(q_LxHxK, k_LxHxK, v_LxHxK, seg_L):
  """Causal attention within a segment: query i sees key j iff j <= i and seg[j] == seg[i]."""
  s_HxLxL = np.einsum("qhk,shk->hqs", q_LxHxK, k_LxHxK)
  i = np.arange(len(seg_L))
  mask_LxL = (i[None, :] <= i[:, None]) & (seg_L[None, :] == seg_L[:, None])
  s_HxLxL = np.where(mask_LxL[None], s_HxLxL, -1e30)
  p_HxLxL = np.exp(s_HxLxL - s_HxLxL.max(axis=-1, keepdims=True))
  p_HxLxL /= p_HxLxL.sum(axis=-1, keepdims=True)
  return np.einsum("hqs,shk->qhk", p_HxLxL, v_LxHxK)


def forward(m: Model, tokens, pos, gap, segment_ids=None):
  """Logits [L, vocab_size] (fp32) of one sequence; ids >= model_vocab_size are padding."""
  a, w = m.arch, m.weights
  tokens, pos, gap = (np.asarray(t, np.int64) for t in (tokens, pos, gap))
  if len(tokens) > a["context"]:
    raise ValueError(f"{len(tokens)} tokens exceed the model's context of {a['context']}")
  seg = np.zeros_like(tokens) if segment_ids is None else np.asarray(segment_ids)
  x = rms_norm(w["embed"][tokens] + w["gap_embed"][np.clip(gap, 0, a["context"])])
  for i in range(a["num_layers"]):
    p = {name.split(".")[-1]: t for name, t in w.items() if name.startswith(f"blocks.{i}.")}
    h = rms_norm(x)
    q, k, v = (np.einsum("ld,dhk->lhk", h, p[name]) for name in ("wq", "wk", "wv"))
    q = rope(rms_norm(q), pos, a["rope_base"]) * np.float32(a["head_dim"] ** -0.5)
    k = rope(rms_norm(k), pos, a["rope_base"])
    x = x + np.einsum("lhk,hkd->ld", attention(q, k, v, seg), p["wo"])
    x = x + np.square(np.maximum(rms_norm(x) @ p["w_up"], 0.0)) @ p["w_down"]
  logits = rms_norm(x) @ w["head"]
  cap = a["logit_softcap"]
  return cap * np.tanh(logits / cap) if cap else logits


# ------------------------------------------------------------------------------------ prompts


def ar_prompt(doc, special: dict, start: int = 0):
  """`[BOS] doc` at positions start, start+1, ... (BOS only at the document start), gap 0."""
  toks = ([special["bos"]] if start == 0 else []) + list(doc)
  return (
    np.asarray(toks, np.int32),
    np.arange(start, start + len(toks), dtype=np.int32),
    np.zeros(len(toks), np.int32),
  )


def fim_prompt(
  prefix,
  suffix,
  special: dict,
  positions: str = "continued",
  *,
  start: int = 0,
  bos: bool = True,
  eos: bool = True,
  spm: bool = False,
):
  """PSM `[BOS] prefix MASK suffix [EOS] MID` (SPM: `MASK suffix [EOS] [BOS] prefix MID`).

  Prefix and suffix keep document positions with the hole collapsed onto MASK's position p;
  MID sits at p (`sequential`: every cell at start + its index); gap 0 up to MID, MID 1.
  """
  sp = special
  pre = ([sp["bos"]] if bos else []) + list(prefix)
  suf = list(suffix) + ([sp["eos"]] if eos else [])
  p = start + len(pre)
  pre_cells = [(t, start + i) for i, t in enumerate(pre)]
  suf_cells = [(sp["mask"], p)] + [(t, p + 1 + j) for j, t in enumerate(suf)]
  cells = (suf_cells + pre_cells if spm else pre_cells + suf_cells) + [(sp["mid"], p)]
  tokens = np.asarray([t for t, _ in cells], np.int32)
  pos = np.asarray([x for _, x in cells], np.int32)
  if positions == "sequential":
    pos = np.arange(start, start + len(cells), dtype=np.int32)
  gap = np.zeros(len(cells), np.int32)
  gap[-1] = 1
  return tokens, pos, gap


def greedy(m: Model, tokens, pos, gap, *, infill: bool, max_new: int) -> list[int]:
  """Greedy continuation (stop token dropped): the middle until EOM, or the document until EOS.

  Each new token is fed at pos + 1 (+ 0 for a `collapsed` middle) and gap + 1 when infilling,
  at pos + 1 and gap 0 when generating; only tokenizer ids and the stop token are drawn.
  """
  sp, a = m.special, m.arch
  stop = sp["eom" if infill else "eos"]
  d_pos = 0 if infill and m.positions == "collapsed" else 1
  allowed = np.zeros(a["vocab_size"], bool)
  allowed[: min(sp["bos"], a["model_vocab_size"])] = True
  allowed[sp["pad"]], allowed[stop] = False, True
  tokens, pos, gap = list(tokens), list(pos), list(gap)
  out = []
  for _ in range(max_new):
    t = int(np.argmax(np.where(allowed, forward(m, tokens, pos, gap)[-1], -np.inf)))
    if t == stop:
      break
    out.append(t)
    tokens.append(t)
    pos.append(pos[-1] + d_pos)
    gap.append(gap[-1] + 1 if infill else 0)
  return out
