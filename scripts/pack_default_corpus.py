"""Packs the shared corpus of real workflows into the package (run from the repository root).

  python scripts/pack_default_corpus.py [--shared ../shared]

Writes `fimjax/data/default_corpus/workflows.tar.xz` (the files under `raw/`, MANIFEST.tsv,
SPLIT.tsv and every source's license text, byte for byte; a reproducible archive: sorted names,
fixed owner and time) and `fimjax/data/default_corpus/NOTICE.md` (each source repository, its
license, snapshot commit and file count), and copies the workflow JSON schema with its license
and notice into `fimjax/data/schemas/`.
"""

import argparse
import collections
import csv
import io
import pathlib
import shutil
import tarfile

OUT = pathlib.Path("fimjax/data/default_corpus")
SCHEMAS = pathlib.Path("fimjax/data/schemas")


def _add(tar: tarfile.TarFile, path: pathlib.Path, name: str) -> None:
  info = tarfile.TarInfo(name)
  data = path.read_bytes()
  info.size, info.mtime, info.mode = len(data), 1_767_225_600, 0o644  # 2026-01-01
  tar.addfile(info, io.BytesIO(data))


def pack(shared: pathlib.Path) -> None:
  src = shared / "data" / "workflows"
  names = sorted(
    p.relative_to(src).as_posix()
    for p in src.rglob("*")
    if p.is_file() and p.relative_to(src).parts[0] in ("raw", "licenses")
  )
  names += ["MANIFEST.tsv", "SPLIT.tsv"]
  with tarfile.open(OUT / "workflows.tar.xz", "w:xz", preset=9) as tar:
    for name in names:
      _add(tar, src / name, name)
  with open(src / "MANIFEST.tsv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  by_repo = collections.defaultdict(list)
  for r in rows:
    by_repo[r["source_repo"]].append(r)
  lines = [
    "# NOTICE: the embedded default corpus",
    "",
    f"`workflows.tar.xz` holds {len(rows)} GitHub Actions workflow files written by other people,",
    "copied byte for byte from the public repositories below (some deliberately broken: they come",
    "from linters' test suites). Each file stays under its repository's license; the license texts",
    "are inside the archive under `licenses/`, and `MANIFEST.tsv` there gives every file's source",
    "path, commit and sha256. Packed by `scripts/pack_default_corpus.py`.",
    "",
    "| source repository | license | snapshot commit | files |",
    "|---|---|---|---:|",
  ]
  for repo in sorted(by_repo, key=lambda k: (-len(by_repo[k]), k)):
    rs = by_repo[repo]
    heads = sorted({r["commit"] for r in rs if r["at_head"] == "yes"})
    licenses = sorted({r["license"] for r in rs})
    commits = ", ".join(f"`{c[:12]}`" for c in heads) or "-"
    history = sum(r["at_head"] != "yes" for r in rs)
    more = f" (+{history} files from earlier commits, listed in MANIFEST.tsv)" if history else ""
    lines.append(
      f"| [{repo}](https://github.com/{repo}) | {', '.join(licenses)} | {commits}{more} "
      f"| {len(rs)} |"
    )
  (OUT / "NOTICE.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
  SCHEMAS.mkdir(exist_ok=True)
  for name in (
    "github-workflow.json",
    "SchemaStore__schemastore.LICENSE.txt",
    "SchemaStore__schemastore.NOTICE.txt",
    "README.md",
  ):
    shutil.copyfile(shared / "data" / "schemas" / name, SCHEMAS / name)


if __name__ == "__main__":
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--shared", default="../shared", type=pathlib.Path)
  pack(ap.parse_args().shared)
