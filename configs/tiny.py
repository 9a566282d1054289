"""tiny: a 1.9M-parameter model (BPE vocab 4096) that trains on a laptop CPU in a few minutes.

Run (what `make train` does):
  python -m fimjax.main --config configs/tiny.py --workdir runs/tiny

Trains on the embedded default corpus (38 hand-written workflows plus 3,000 seeded generated ones)
with a byte-level BPE. Expect (measured 2026-11-29 on a 2-core CPU): cache build ~5 s, 400 steps
in ~3.7 min in all (~9,000 tokens/s when the cores are idle, ~3,600 when shared), evaluation
every 100 steps. Final train loss ~0.5, validation loss 0.446 nats/token, FIM middle loss 0.711
(a fim.rate=0 model on the same steps: 0.381 and 3.158; `python -m fimjax.compare`). At this size
infill exact match is still 0 (the model has not yet learned where to stop): this config is a
quick end-to-end check, not a useful model.
"""

from fimjax.config_base import base_config


def get_config():
  c = base_config("tiny")
  c.model.dtype = "float32"  # bf16 matmuls are slower than f32 on CPU
  c.optim.lr = 2e-3
  c.optim.warmup_steps = 30
  c.train.steps = 400
  c.train.batch_size = 16
  c.train.log_every_steps = 10
  c.train.eval_every_steps = 100
  c.train.checkpoint_every_steps = 100
  c.train.eval_batch_size = 32
  c.data.bpe_vocab_size = 4096  # a smaller head: the tiny model spends its FLOPs on the blocks
  return c
