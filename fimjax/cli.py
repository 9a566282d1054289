"""Command-line plumbing shared by fimjax's tools: config flags with one-line errors."""

import re
import sys

from absl import flags


def _one_line(error: BaseException) -> str:
  text = str(error).strip("'\" ")
  text = text.encode().decode("unicode_escape") if "\\n" in text else text
  return " ".join(part.strip("'\" ") for part in text.splitlines() if part.strip())


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing that turns config mistakes into one line on stderr and exit status 2.

  An unknown key (`--config.train.stepz=5`), a wrong type (`--config.train.steps=abc`) or a
  missing config file names the flag and stops before any work is done.
  """
  try:
    rest = flags.FLAGS(argv)
    if "config" in flags.FLAGS and flags.FLAGS["config"].present:
      _ = flags.FLAGS.config.to_dict  # a file that failed to load raises here, not later
    return rest
  except flags.Error as e:
    message = f"{e}"
  except (AttributeError, KeyError) as e:
    detail = _one_line(e)
    name = detail.split()[0] if detail else ""
    key = next((a.split("=")[0] for a in argv
                if a.startswith("--config.") and a.split("=")[0].endswith("." + name)), "--config")
    message = f"{key}: no such config field ({detail})"
  except Exception as e:  # pylint: disable=broad-except  # a config file that does not load
    message = f"--config: cannot load the config file: {type(e).__name__}: {_one_line(e)}"
  message = re.sub(r"\s+", " ", message)
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)
