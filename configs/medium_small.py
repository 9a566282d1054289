"""medium_small: 27.5M parameters. One GPU.

Run:
  python -m fimjax.main --config configs/medium_small.py --workdir runs/medium_small \
      --config.data.corpus=/path/to/workflows

Reference hyperparameters: AdamW (0.9, 0.95), weight decay 0.1, clip 1.0, warmup then cosine to
10%, 128 rows per step, lr 3e-4. Check memory first: python -m fimjax.fit --config configs/medium_small.py
Final loss: not measured yet for this config (no accelerator run recorded).
"""

from fimjax.config_base import base_config


def get_config():
  c = base_config("medium_small")
  c.optim.lr = 3e-4
  c.train.steps = 20000
  c.train.microbatches = 4  # 32 rows per pass: ~33 GiB on one device (fimjax.fit)
  return c
