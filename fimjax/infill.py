"""Fill the holes of a workflow file with a trained model.

  python -m fimjax.infill --workdir DIR FILE [--out PATH] [--temperature T] [--top-k K]
                          [--top-p P] [--seed S] [--max-tokens N] [--step STEP]

A hole is the marker `<FILL>`. Alone on its line (indentation allowed) it is a *line hole*: the
model writes that whole line, its indentation included (and may write several lines). Inside a
line it is a *span hole*: the model writes the text between what precedes and what follows it
(spaces right before the marker belong to the hole: BPE tokens carry their leading space).
Holes are filled left to right; hole i sees the file before it with the earlier holes already
filled (prefix) and the text up to the next hole (suffix). A suffix cut at the next hole is
what training calls a window that ends mid-document, so no EOS follows it; the last hole's
suffix runs to the end of the file, followed by EOS. See docs/infill.md.

Only the BPE tokenizer can express a hole in the text; with TCT (whole JSON documents only) the
command stops with a one-line error.
"""

import argparse
import dataclasses
import re
import sys

from fimjax import sample as sample_lib

MARKER = "<FILL>"
_LINE = re.compile(r"^[ \t]*" + re.escape(MARKER) + r"[ \t]*$")


class InfillError(ValueError):
  """A hole that cannot be filled; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class Hole:
  start: int  # characters [start, end) of the file are replaced by the middle
  end: int
  kind: str  # "line" | "span"


def find_holes(text: str) -> list[Hole]:
  """Holes in file order. A line hole spans the newline before its line and the line itself."""
  holes = []
  for m in re.finditer(re.escape(MARKER), text):
    line_start = text.rfind("\n", 0, m.start()) + 1
    line_end = text.find("\n", m.end())
    line_end = len(text) if line_end < 0 else line_end
    if _LINE.match(text[line_start:line_end]):
      # BPE tokens start a line with "\n" + indentation: the hole begins at that newline.
      holes.append(Hole(max(line_start - 1, 0), line_end, "line"))
    else:  # BPE words carry their leading space: spaces before the marker join the hole
      start = m.start()
      while start > line_start and text[start - 1] in " \t":
        start -= 1
      holes.append(Hole(start, m.end(), "span"))
  return holes


def crop(prefix: list[int], suffix: list[int], budget: int) -> tuple[int, int]:
  """(prefix tokens dropped from the left, suffix tokens kept): the hole's nearest context."""
  half = budget // 2
  keep_suf = min(len(suffix), max(half, budget - len(prefix)))
  keep_pre = min(len(prefix), budget - keep_suf)
  return len(prefix) - keep_pre, keep_suf


def hole_prompt(prefix: list[int], suffix: list[int], special_ids: dict, context: int,
                max_new: int, *, last: bool) -> sample_lib.Prompt:
  """The FIM prompt of one hole, cropped to leave `max_new` tokens in `context`."""
  budget = context - max_new - 4  # BOS, MASK, EOS, MID
  if budget < 2:
    raise InfillError(f"--max-tokens {max_new} leaves no room for context in the model's "
                      f"context of {context} tokens")
  drop, keep = crop(prefix, suffix, budget)
  return sample_lib.infill_prompt(prefix[drop:], suffix[:keep], special_ids,
                                  start=drop + 1 if drop else 0,
                                  bos=drop == 0, eos=last and keep == len(suffix))


def fill(text: str, tokenizer, cfg, params, special_ids: dict, model_vocab_size: int, *,
         sc: sample_lib.SampleConfig, seed: int = 0, log=None) -> str:
  """`text` with every hole filled (left to right)."""
  holes = find_holes(text)
  if not holes:
    raise InfillError(f"no hole: mark one with {MARKER} (alone on a line for a whole line, "
                      "inside a line for a span)")
  if getattr(tokenizer, "name", "") != "bpe":
    raise InfillError(f"the {tokenizer.name} tokenizer encodes whole JSON documents only, so a "
                      f"{MARKER} hole in the text cannot be expressed; infilling needs a model "
                      "trained with --config.data.tokenizer=bpe (see docs/infill.md)")
  done, cursor = "", 0
  for i, hole in enumerate(holes):
    done += text[cursor:hole.start]
    nxt = holes[i + 1].start if i + 1 < len(holes) else len(text)
    prompt = hole_prompt(tokenizer.encode(done), tokenizer.encode(text[hole.end:nxt]),
                         special_ids, cfg.context, sc.max_new, last=i + 1 == len(holes))
    res = sample_lib.sample(cfg, params, [prompt], special_ids, model_vocab_size,
                            mode=sample_lib.INFILL, sc=sc, seed=seed + i)
    middle = tokenizer.decode(res.tokens[0])
    if log is not None and not res.stopped[0]:
      log(f"warning: hole {i + 1} ({hole.kind}, line {text.count(chr(10), 0, hole.start) + 1}): "
          f"no end of middle within {sc.max_new} tokens; kept what was written")
    done += middle
    cursor = hole.end
  return done + text[cursor:]


def _args(argv):
  p = argparse.ArgumentParser(prog="python -m fimjax.infill", description=__doc__.split("\n")[0])
  p.add_argument("file", help=f"workflow file with {MARKER} holes")
  p.add_argument("--workdir", required=True, help="run directory with checkpoints")
  p.add_argument("--out", help="write the completed workflow here (default: print it)")
  p.add_argument("--step", type=int, help="checkpoint step (default: best, else latest)")
  p.add_argument("--hole", help="TCT only: a path such as jobs.build.steps[2] (not supported yet)")
  add_sampling_flags(p, temperature=0.0, max_tokens=128)
  return p.parse_args(argv)


def add_sampling_flags(p: argparse.ArgumentParser, *, temperature: float, max_tokens: int):
  p.add_argument("--temperature", type=float, default=temperature, help="0 = greedy")
  p.add_argument("--top-k", type=int, default=0, help="0 = off")
  p.add_argument("--top-p", type=float, default=1.0, help="1.0 = off")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--max-tokens", type=int, default=max_tokens, help="tokens per hole / sample")


def load_model(workdir: str, step=None):
  """(config, cache, ModelConfig, params, step) of a run's checkpoint."""
  from fimjax import checkpoint  # pylint: disable=g-import-not-at-top  # jax after arg parsing
  from fimjax import model as model_lib  # pylint: disable=g-import-not-at-top
  config, cache, state, step = checkpoint.load_run(workdir, step=step)
  cfg = model_lib.ModelConfig.from_config(config, cache.model_vocab_size)
  return config, cache, cfg, state["params"], step


def main(argv=None) -> int:
  args = _args(sys.argv[1:] if argv is None else argv)
  err = lambda msg: print(f"error: {msg}", file=sys.stderr)
  try:
    with open(args.file, encoding="utf-8") as f:
      text = f.read()
  except OSError as e:
    err(f"cannot read {args.file}: {e.strerror}")
    return 2
  if args.hole is None and not find_holes(text):
    err(f"{args.file} has no hole: mark one with {MARKER} (alone on a line for a whole line, "
        "inside a line for a span)")
    return 2
  try:
    _, cache, cfg, params, _ = load_model(args.workdir, args.step)
    tok = cache.tokenizer()
    if args.hole is not None:
      raise InfillError(
          f"--hole {args.hole}: hole paths are not supported yet (a {tok.name} model: "
          + ("TCT encodes whole JSON documents only" if tok.name == "tct" else
             f"mark the hole with {MARKER} in the file instead") + "; see docs/infill.md)")
    sc = sample_lib.SampleConfig(args.temperature, args.top_k, args.top_p,
                                 min(args.max_tokens, cfg.context // 2))
    out = fill(text, tok, cfg, params, cache.special_ids, cache.model_vocab_size, sc=sc,
               seed=args.seed, log=lambda m: print(m, file=sys.stderr))
  except (InfillError, FileNotFoundError, ValueError) as e:
    err(str(e).splitlines()[0] if str(e) else type(e).__name__)
    return 2 if isinstance(e, InfillError) else 1
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(out)
  else:
    sys.stdout.write(out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
