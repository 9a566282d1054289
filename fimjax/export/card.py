"""The model card (README.md) an export carries: what the model is, its data, training and
metrics, intended use and how to load the files."""


def model_card(cj: dict, n_params: int) -> str:
  """README.md: what the model is, its data, training and metrics, and how to load it."""
  a, t, tok = cj["architecture"], cj.get("training", {}), cj["tokenizer"]
  rows = "\n".join(
    f"| `{k}` | {v:.4g} |"
    for k, v in sorted(t.get("metrics", {}).items())
    if not k.startswith(("infill_n", "infill_written", "gen_num", "eval_tokens"))
  )
  fim = ", ".join(f"{k} {v}" for k, v in t.get("fim", {}).items())
  docs, toks = t.get("documents") or {}, t.get("tokens") or {}
  data = (
    f"corpus `{t.get('corpus')}`: {docs.get('train', 0):,} training / "
    f"{docs.get('validation', 0):,} validation documents, {toks.get('train', 0):,} / "
    f"{toks.get('validation', 0):,} tokens"
    if t
    else "not recorded"
  )
  tok_line = (
    "`tokenizer.json` (byte-level BPE; specials added by name)"
    if tok["type"] == "bpe"
    else f"TCT module `{tok['module']}` version `{tok['version']}` (install it: its "
    "ids are fixed by the module; no tokenizer.json)"
  )
  return f"""# fimjax model `{t.get('config_name', '?')}`, step {cj['step']}

A {n_params / 1e6:.1f}M-parameter decoder-only transformer trained by fimjax with
fill-in-the-middle (FIM) on GitHub Actions workflows: it fills holes in a workflow and writes
workflows from scratch.
{a['num_layers']} layers, d_model {a['d_model']}, {a['num_heads']} heads, context {a['context']},
vocab {a['model_vocab_size']} ({a['vocab_size']} padded); weights in {cj['weights_dtype']}.

## Data and training

- Data: {data}.
- Tokenizer: {tok_line}.
- Steps: {cj['step']} of {t.get('steps', '?')}; FIM: {fim or 'not recorded'}.

## Evaluation at step {cj['step']}

| metric | value |
|---|---|
{rows or '| (none recorded at this step) | |'}

All figures, counts included: `config.json` `training.metrics`.

## Intended use

Completing and drafting GitHub Actions workflows (editors, scripts); research on FIM at small
scale. Review what it writes: it can produce invalid or unsafe workflows (broad permissions,
unpinned actions) and reproduce text of the public workflows it was trained on.

## Files and how to load them

`config.json` has every architecture field, the forward pass step by step (`forward`), the
tensor layouts (`tensors`) and how to build `tokens`, `pos` and `gap` (`inputs`, with examples).

NumPy only (`fimjax/reference.py` imports numpy alone; copy it anywhere):

```python
from fimjax import reference
m = reference.load("THIS_DIR")
tokens, pos, gap = reference.fim_prompt(prefix_ids, suffix_ids, m.special, m.positions)
middle = reference.greedy(m, tokens, pos, gap, infill=True, max_new=64)  # ids, until <|eom|>
logits = reference.forward(m, tokens, pos, gap)  # [len, vocab_size]
```

With fimjax (JAX): `cfg, params, _ = fimjax.export.load_export("THIS_DIR")`, then
`fimjax.model.apply(cfg, params, tokens[None], pos[None], gap[None])`. Text to ids (BPE):
`tokenizers.Tokenizer.from_file("THIS_DIR/tokenizer.json").encode(text, add_special_tokens=False)`.
"""
