"""Output paths checked before any work: one answer for every tool and layer."""

import os


def output_error(path: str, *, folder: bool = False) -> str | None:
  """Why `path` cannot be written as a file (or made a folder, parents included, when `folder`);
  None when it can. Tools check their outputs before any work."""
  target = os.path.abspath(path)
  if os.path.exists(target):
    if os.path.isdir(target) != folder:
      want, got = ("folder", "file") if folder else ("file", "folder")
      return f"{path} is a {got}: give a {want} path"
    where = target
  else:
    where = os.path.dirname(target)
    while folder and not os.path.exists(where):
      where = os.path.dirname(where)
    if not os.path.isdir(where):
      return (
        f"{path}: {where} is a file, not a folder"
        if os.path.exists(where)
        else f"{path}: no such folder {where}"
      )
  if not os.access(where, os.W_OK | (os.X_OK if os.path.isdir(where) else 0)):
    return f"{path}: {where} is not writable"
  return None
