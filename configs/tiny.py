"""tiny: a 1.9M-parameter model (BPE vocab 4096) that trains on a laptop CPU in a few minutes.

Run (what `make train` does):
  python -m fimjax.main --config configs/tiny.py --workdir runs/tiny

Trains on the embedded default corpus (38 hand-written workflows plus 3,000 seeded generated ones)
with a byte-level BPE. Expect (measured 2026-11-29 on a shared 2-core CPU, load ~3): cache build
~10 s, ~1.1 s/step (~3,600 tokens/s), 200 steps in ~4.5 min in all; train loss ~1.05, validation
loss ~0.98 nats/token, FIM middle loss ~1.44. At this size infill exact match is still ~0: the
point of this config is a quick end-to-end check, not a useful model.
"""

from fimjax.config_base import base_config


def get_config():
  c = base_config("tiny")
  c.model.dtype = "float32"  # bf16 matmuls are slower than f32 on CPU
  c.optim.lr = 2e-3
  c.optim.warmup_steps = 30
  c.train.steps = 200
  c.train.batch_size = 16
  c.train.log_every_steps = 10
  c.train.eval_every_steps = 100
  c.train.checkpoint_every_steps = 100
  c.train.eval_batch_size = 32
  c.data.default_corpus_size = 3000
  c.data.bpe_vocab_size = 4096  # a smaller head: the tiny model spends its FLOPs on the blocks
  return c
