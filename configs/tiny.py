"""tiny: a ~3M-parameter model that trains on a laptop CPU in a few minutes.

Run (what `make train` does):
  python -m fimjax.main --config configs/tiny.py --workdir runs/tiny

Trains on the embedded default corpus (hand-written workflows plus seeded generated ones) with a
byte-level BPE. Expect: figures are filled in by the session that measures them.
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
