#!/usr/bin/env bash
# Prints the path of a Python 3.12+ interpreter, or explains what to install.
# Order: $PYTHON, python3.13/3.12 on PATH, python3, then pyenv's installed versions.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
for c in ${PYTHON:-} python3.12 python3.13 python3.14 python3; do
  p=$(command -v "$c" 2>/dev/null) || continue
  if ok "$p"; then echo "$p"; exit 0; fi
done
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
for p in $(ls -d "$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do
  if ok "$p"; then echo "$p"; exit 0; fi
done
echo "fimjax needs Python 3.12 or newer (the newest JAX requires it) and none was found." >&2
echo "Install one (e.g. 'pyenv install 3.12', 'apt install python3.12', or python.org) or set PYTHON=/path/to/python3.12." >&2
exit 1
