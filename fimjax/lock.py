"""An exclusive lock on a run directory: one training run per workdir at a time.

`<workdir>/.fimjax-lock` names the run that holds it (pid, host, start time), and that run holds
an `flock` on the file while it lives (the kernel drops it when the process dies). A lock is stale
when its process is gone: on this host the flock is free (or, where the filesystem has no flock,
that pid no longer exists); a stale lock is taken over. A live run's lock, or one taken on another
host (whose pid cannot be checked from here), is refused with a one-line error. Read-only tools
(infill, generate, evaluate) take no lock. The lock is released (the file removed) on exit.
"""

import contextlib
import fcntl
import json
import os
import socket
import time

LOCK_FILE = ".fimjax-lock"


class WorkdirLocked(RuntimeError):
  """Another run holds the workdir; the message names it and the fix."""


def _alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except (ProcessLookupError, ValueError, TypeError):
    return False
  except PermissionError:
    return True  # exists, owned by someone else
  return True


def _read(fd: int) -> dict:
  os.lseek(fd, 0, os.SEEK_SET)
  try:
    holder = json.loads(os.read(fd, 4096).decode() or "{}")
  except ValueError:
    return {}
  return holder if isinstance(holder, dict) else {}


def _refusal(path: str, holder: dict, host: str) -> WorkdirLocked:
  who = f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
  gone = f"; if that run is gone, delete {path}" if holder.get("host") != host else ""
  return WorkdirLocked(
    f"the workdir {os.path.dirname(path)} is in use by another training run "
    f"({who}; lock file {path}): wait for it to finish or stop it, or use "
    f"another --workdir{gone}"
  )


def acquire(workdir: str) -> int:
  """Takes the lock of `workdir` (an existing folder); returns the open lock file to release."""
  path, host = os.path.join(workdir, LOCK_FILE), socket.gethostname()
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      flocked = True
    except BlockingIOError:
      flocked = None  # a live process holds it
    except OSError:
      flocked = False  # no flock on this filesystem: the pid check alone
    holder = _read(fd)
    if holder.get("pid") is None or (
      holder.get("pid") == os.getpid() and holder.get("host") == host and flocked
    ):
      held = flocked is None
    elif holder.get("host") != host:
      held = True  # cannot tell whether a pid on another host lives
    else:
      held = flocked is None or (flocked is False and _alive(holder["pid"]))
    if held:
      os.close(fd)
      raise _refusal(path, holder, host)
    try:
      if os.stat(path).st_ino == os.fstat(fd).st_ino:
        break
    except FileNotFoundError:
      pass
    os.close(fd)  # the file was removed (a run releasing it) after we opened it: again
  if holder.get("pid") not in (None, os.getpid()):
    print(
      f"note: took over the stale lock {path} (pid {holder['pid']} on {host} is gone)", flush=True
    )
  mine = {"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  os.ftruncate(fd, 0)
  os.lseek(fd, 0, os.SEEK_SET)
  os.write(fd, json.dumps(mine).encode())
  os.fsync(fd)
  return fd


def release(workdir: str, fd: int) -> None:
  """Removes the lock file (if it is still ours), then drops the flock."""
  try:
    if _read(fd).get("pid") == os.getpid():
      os.unlink(os.path.join(workdir, LOCK_FILE))
  except OSError:
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def hold(workdir: str):
  """`with hold(workdir):` runs its body holding the workdir's lock."""
  fd = acquire(workdir)
  try:
    yield
  finally:
    release(workdir, fd)
