"""The cache's folder: refuse folders that are not ours, write files durably, and commit a finished
build atomically (a temp folder beside `out`, renamed into place; never a mix of two builds)."""

import json
import os
import pathlib
import shutil
import socket
import uuid
from typing import Callable

from fimjax.data import corpus as corpus_lib
from fimjax.data import paths
from fimjax.data.cache_format import (
  ARRAYS,
  DOCS_TSV,
  META,
  TOKENIZER_FILE,
  CacheError,
  read_meta,
)


def foreign(path: pathlib.Path) -> list[str]:
  """Names in the folder `path` that a cache build does not write (a rebuild would delete them)."""
  own = {*ARRAYS, META, TOKENIZER_FILE, DOCS_TSV, corpus_lib.CACHE_MARKER}
  return sorted(p.name for p in path.iterdir() if p.name not in own) if path.is_dir() else []


def owned(path: pathlib.Path) -> bool:
  """Ours to replace: a fimjax cache (marker or meta) holding only its own files, or an empty
  folder, or nothing."""
  if not path.exists():
    return True
  if not path.is_dir() or foreign(path):
    return False
  return (
    not any(path.iterdir())
    or (path / corpus_lib.CACHE_MARKER).is_file()
    or read_meta(path) is not None
  )


def refuse_unowned(out: pathlib.Path) -> None:
  """A rebuild replaces the whole folder: refuse one that holds anything but a cache."""
  if owned(out):
    return
  if not out.is_dir():
    raise CacheError(
      f"refusing to write the cache into {out}: it is not a folder; choose "
      "another --out / data.cache_dir"
    )
  names = foreign(out) or [f"no {META}"]
  shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
  raise CacheError(
    f"refusing to write the cache into {out}: it holds files that are not a fimjax "
    f"token cache's ({shown}) and a rebuild would delete them; choose another "
    "--out / data.cache_dir (a folder of its own)"
  )


def check_writable(out: pathlib.Path) -> None:
  """Fails before any work where the cache cannot be written: a file on the way to `out`, or a
  read-only folder where it is to be made (the build writes next to `out`, then renames)."""
  if problem := paths.output_error(str(out.parent), folder=True):
    raise CacheError(
      f"cannot write the cache to {out}: {problem}; choose another --out / data.cache_dir"
    )


def write(path: pathlib.Path, write: Callable) -> None:
  """write(file) then fsync, so a committed cache is on disk before its rename."""
  with open(path, "wb") as f:
    write(f)
    f.flush()
    os.fsync(f.fileno())


def write_meta(path: pathlib.Path, meta: dict) -> None:
  write(path / META, lambda f: f.write(json.dumps(meta, indent=1, ensure_ascii=False).encode()))


def tmp_prefix(out: pathlib.Path) -> str:
  return f".{out.name}.tmp-{socket.gethostname()}-"


def clean_dead_tmp(out: pathlib.Path) -> None:
  """Removes replaced caches left by a killed commit, and this host's killed builds' temp dirs."""
  for p in out.parent.glob(f".{out.name}.old-*"):
    shutil.rmtree(p, ignore_errors=True)
  prefix = tmp_prefix(out)
  for p in out.parent.glob(prefix + "*"):
    try:
      pid = int(p.name[len(prefix) :].split("-")[0])
      os.kill(pid, 0)
    except ProcessLookupError:
      shutil.rmtree(p, ignore_errors=True)
    except (ValueError, PermissionError):
      pass


def commit(tmp: pathlib.Path, out: pathlib.Path, settings: dict) -> None:
  """Moves the finished build into place with renames; an old cache is replaced, never mixed."""
  if out.is_dir() and not any(out.iterdir()):
    out.rmdir()
  if not out.exists():
    try:
      os.rename(tmp, out)
      return
    except OSError:
      if not out.exists():
        raise
      if (read_meta(out) or {}).get("settings") == settings:  # another process built the same
        shutil.rmtree(tmp, ignore_errors=True)
        return
  refuse_unowned(out)  # again: the folder may have changed during the build
  old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
  os.rename(out, old)
  os.rename(tmp, out)
  shutil.rmtree(old, ignore_errors=True)
