"""medium_512: 83.4M parameters, context 512. One GPU; the MFU benchmark config.

Run:
  python -m fimjax.main --config configs/medium_512.py --workdir runs/medium_512 \
      --config.data.corpus=/path/to/workflows

Reference hyperparameters: AdamW (0.9, 0.95), weight decay 0.1, clip 1.0, warmup then cosine to
10%, 128 rows per step, lr 1.2e-4. Check memory first: python -m fimjax.fit --config configs/medium_512.py
Final loss: not measured yet for this config (no accelerator run recorded).
"""

from fimjax.config_base import base_config


def get_config():
  c = base_config("medium_512")
  c.optim.lr = 1.2e-4
  c.train.steps = 20000
  c.train.microbatches = 4  # 32 rows per pass: ~21 GiB on one device (fimjax.fit)
  return c
