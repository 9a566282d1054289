"""Command-line plumbing shared by fimjax's tools: one-line errors for config flags, argparse
arguments and output paths."""

import argparse
import os
import re
import sys

from absl import flags

from fimjax.data import paths


def _one_line(error: BaseException) -> str:
  text = str(error).strip("'\" ")
  text = text.encode().decode("unicode_escape") if "\\n" in text else text
  return " ".join(part.strip("'\" ") for part in text.splitlines() if part.strip())


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing that turns config mistakes into one line on stderr and exit status 2.

  An unknown key (`--config.train.stepz=5`), a wrong type (`--config.train.steps=abc`), a
  missing config file or one without `get_config()` names the flag and stops before any work.
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
    if isinstance(e, AttributeError) and "no attribute 'get_config'" in str(e):  # not a field
      from fimjax import config_base  # pylint: disable=g-import-not-at-top
      message = f"--config: {config_base.no_get_config(_flag_value(argv, '--config'))}"
    else:
      name = detail.split()[0] if detail else ""
      key = next((a.split("=")[0] for a in argv if a.startswith("--config.")
                  and a.split("=")[0].endswith("." + name)), "--config")
      message = f"{key}: no such config field ({detail})"
  except Exception as e:  # pylint: disable=broad-except  # a config file that does not load
    message = f"--config: cannot load the config file: {type(e).__name__}: {_one_line(e)}"
  message = re.sub(r"\s+", " ", message)
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _flag_value(argv: list[str], name: str) -> str:
  """The value given to `name` (`--name=value` or `--name value`), or "" when absent."""
  for i, arg in enumerate(argv):
    if arg.startswith(name + "="):
      return arg[len(name) + 1:].split(":")[0]
    if arg == name and i + 1 < len(argv):
      return argv[i + 1].split(":")[0]
  return ""


class ArgumentParser(argparse.ArgumentParser):
  """argparse whose usage errors are one line, `error: ...`, with exit status 2."""

  def error(self, message):
    print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
    sys.exit(2)


def number(kind=int, *, low=None, above=None, high=None):
  """An argparse type: a `kind` number >= `low`, > `above` and <= `high` (each when given)."""
  def parse(text: str):
    try:
      value = kind(text)
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    for bad, rule in ((low is not None and value < low, f">= {low}"),
                      (above is not None and value <= above, f"> {above}"),
                      (high is not None and value > high, f"<= {high}")):
      if bad:
        raise argparse.ArgumentTypeError(f"must be {rule}, not {text}")
    return value
  return parse


output_error = paths.output_error  # tools and the core share one check (fimjax.data.paths)

