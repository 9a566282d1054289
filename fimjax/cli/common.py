"""One flag system for every command: absl flags, one `FlagValues` per command run.

Underscores are the spelling (`--max_tokens`, absl's convention); the dashed spelling of earlier
releases (`--max-tokens`, `--no-progress`) is read as the same flag. A command's mistakes (an
unknown flag, a bad value, a missing file, a config key that does not exist) are one line on
stderr, `error: ...`, with exit status 2, before any work.
"""

import re
import sys
from typing import Callable, Sequence

from absl import flags
from absl import logging as absl_logging

from fimjax import config_base
from fimjax.data import paths

output_error = paths.output_error  # tools and the core share one check (fimjax.data.paths)
Body = Callable[[flags.FlagValues, list[str]], int]


def _one_line(error: BaseException) -> str:
  text = str(error).strip("'\" ")
  text = text.encode().decode("unicode_escape") if "\\n" in text else text
  return " ".join(part.strip("'\" ") for part in text.splitlines() if part.strip())


def fail(prog: str, message: str) -> int:
  """Prints a usage error as one line and returns exit status 2."""
  message = re.sub(r"\s+", " ", message)
  print(f"error: {message} (see {prog} --help)", file=sys.stderr)
  return 2


def normalise(argv: Sequence[str], fv: flags.FlagValues) -> list[str]:
  """Flag names with dashes read as underscores (`--top-k 5` is `--top_k 5`); `--no-X` and
  `--no_X` of a boolean flag X are absl's `--noX`. Values and everything after `--` are kept."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg == "--":
      break
    m = re.fullmatch(r"(--?)([A-Za-z][\w-]*)(=.*)?", arg, re.S)
    if not m:
      continue
    name = m.group(2).replace("-", "_")
    if name.startswith("no_") and name not in fv and name[3:] in fv and fv[name[3:]].boolean:
      name = "no" + name[3:]
    out[i] = m.group(1) + name + (m.group(3) or "")
  return out


def _config_error(e: BaseException, argv: list[str]) -> str:
  """One line for a config file that does not load or an override of a field it lacks."""
  detail = _one_line(e)
  if isinstance(e, AttributeError) and "no attribute 'get_config'" in str(e):  # not a field
    return f"--config: {config_base.no_get_config(_flag_value(argv, '--config'))}"
  if isinstance(e, (AttributeError, KeyError)):
    name = detail.split()[0] if detail else ""
    key = next(
      (
        a.split("=")[0]
        for a in argv
        if a.startswith("--config.") and a.split("=")[0].endswith("." + name)
      ),
      "--config",
    )
    return f"{key}: no such config field ({detail})"
  return f"--config: cannot load the config file: {type(e).__name__}: {detail}"


def _flag_value(argv: list[str], name: str) -> str:
  """The value given to `name` (`--name=value` or `--name value`), or "" when absent."""
  for i, arg in enumerate(argv):
    if arg.startswith(name + "="):
      return arg[len(name) + 1 :].split(":")[0]
    if arg == name and i + 1 < len(argv):
      return argv[i + 1].split(":")[0]
  return ""


def help_text(prog: str, doc: str, fv: flags.FlagValues) -> str:
  listing = fv.get_help(include_special_flags=False).splitlines()
  return (
    doc.strip()
    + "\n\nflags of "
    + prog
    + ":\n"
    + "\n".join(line for line in listing if line.startswith("  "))
  )


def parse(prog: str, doc: str, fv: flags.FlagValues, argv: Sequence[str]) -> list[str] | int:
  """The positional arguments of `argv` (no program name) after parsing its flags into `fv`;
  or an exit status: 0 after `--help`, 2 after a one-line error."""
  argv = normalise(argv, fv)
  if {"-h", "--help", "-help", "--helpfull"} & set(
    argv[: argv.index("--")] if "--" in argv else argv
  ):
    print(help_text(prog, doc, fv))
    return 0
  try:
    rest = fv([prog, *argv])[1:]
    if "config" in fv and fv["config"].present:
      _ = fv.config.to_dict  # a file that failed to load raises here, not later
    return rest
  except flags.Error as e:
    return fail(prog, str(e))
  except Exception as e:  # pylint: disable=broad-except  # a config file that does not load
    print(f"error: {re.sub(r'\s+', ' ', _config_error(e, argv))}", file=sys.stderr)
    return 2


def _start_program() -> None:
  """As absl's app.run: warnings on stderr in absl's format, no INFO chatter."""
  absl_logging.use_absl_handler()
  absl_logging.set_verbosity(absl_logging.WARNING)


def run(
  prog: str,
  doc: str,
  define: Callable[[flags.FlagValues], None],
  body: Body,
  argv: Sequence[str] | None = None,
  *,
  required: Sequence[str] = (),
  positional: Sequence[str] = (),
  more: bool = False,
  skip: int = 0,
) -> int:
  """Parses `argv` (default: the command line; its first `skip` words, a subcommand, left out)
  with the flags `define` declares on a fresh `FlagValues`, checks `required` flags and the
  `positional` arguments (any number after them when `more`), then returns
  `body(flags, positional arguments)`."""
  fv = flags.FlagValues()
  define(fv)
  rest = parse(prog, doc, fv, list(sys.argv[1:] if argv is None else argv)[skip:])
  if isinstance(rest, int):
    return rest
  if missing := [f"--{name}" for name in required if fv[name].value in (None, "", [])]:
    return fail(prog, f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
  if len(rest) < len(positional):
    return fail(prog, f"missing {' '.join(positional[len(rest) :])}")
  if len(rest) > len(positional) and not more:
    return fail(prog, f"unexpected arguments: {' '.join(rest[len(positional) :])}")
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # libraries (grain) read absl's global flags: their defaults
  if argv is None:
    _start_program()
  return body(fv, rest)


class _Number(flags.ArgumentParser):
  """A number of `kind` >= low, > above and <= high (each when given)."""

  def __init__(self, kind, low, above, high):
    self.kind, self.low, self.above, self.high = kind, low, above, high
    self.syntactic_help = "an integer" if kind is int else "a number"

  def parse(self, argument):
    try:
      value = self.kind(argument)
    except (TypeError, ValueError):
      raise ValueError(f"{argument!r} is not {self.syntactic_help}") from None
    for bad, rule in (
      (self.low is not None and value < self.low, f">= {self.low}"),
      (self.above is not None and value <= self.above, f"> {self.above}"),
      (self.high is not None and value > self.high, f"<= {self.high}"),
    ):
      if bad:
        raise ValueError(f"must be {rule}, not {argument}")
    return value

  def flag_type(self):
    return "int" if self.kind is int else "float"


def number(
  fv: flags.FlagValues,
  name: str,
  default,
  help_text_: str,
  *,
  kind=int,
  low=None,
  above=None,
  high=None,
) -> None:
  """Defines `--name`, a `kind` number in the given bounds (`flag --name=0: must be >= 1,
  not 0` otherwise)."""
  flags.DEFINE(
    _Number(kind, low, above, high),
    name,
    default,
    help_text_,
    serializer=flags.ArgumentSerializer(),
    flag_values=fv,
  )


def model_flags(fv: flags.FlagValues, *, primary: str = "workdir") -> None:
  """`--workdir` (alias `--model`; `primary` picks which is the name) and `--step`."""
  flags.DEFINE_string(
    primary,
    None,
    "a run's workdir, its checkpoints/ folder (or a copy) or one checkpoints/<step> folder",
    flag_values=fv,
  )
  flags.DEFINE_alias("model" if primary == "workdir" else "workdir", primary, flag_values=fv)
  number(fv, "step", None, "checkpoint step (default: best, else latest)", low=0)


def sampling_flags(fv: flags.FlagValues, *, temperature: float, max_tokens: int) -> None:
  """--temperature, --top_k, --top_p, --seed and --max_tokens of the sampler."""
  number(fv, "temperature", temperature, "0 = greedy", kind=float, low=0)
  number(fv, "top_k", 0, "0 = off", low=0)
  number(fv, "top_p", 1.0, "1.0 = off", kind=float, above=0, high=1)
  number(fv, "seed", 0, "sampling seed")
  number(fv, "max_tokens", max_tokens, "tokens per hole / sample", low=1)


def error(message: str) -> None:
  """A runtime error of a command: one line on stderr."""
  print(f"error: {message}", file=sys.stderr)


def first_line(e: BaseException) -> str:
  return str(e).splitlines()[0] if str(e) else type(e).__name__
