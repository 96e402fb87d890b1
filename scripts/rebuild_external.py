#!/usr/bin/env python3
"""Rebuild the texts of the external labelled rows from their public sources.

``data/screening/labels/external.jsonl`` keys each row to ``source:sha1(text)[:12]`` and names
its origin (``owner/repo:path@commit``), licence, and the character span of the text in that
file (``"encoding": "csv"`` when the file doubles quotes inside a CSV field). The texts are not
committed. With the source files on disk, this writes them to ``var/external.jsonl``
(owner-only), checking every text against its key; ``triage train-screener --external`` reads it.

Where the files come from: either ``--files DIR`` holding ``DIR/owner/repo/path`` (each file
downloaded at the commit named), or ``--git-mirrors DIR`` holding bare git repositories as
``DIR/owner+repo/repo``.

Example: ``python scripts/rebuild_external.py --files ~/downloads/sources``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_origin(origin: str, files: Path | None, mirrors: Path | None) -> str | None:
    repo, rest = origin.split(":", 1)
    path, commit = rest.rsplit("@", 1)
    if files is not None:
        candidate = files / repo / path
        return candidate.read_text(encoding="utf-8") if candidate.is_file() else None
    if mirrors is not None:
        git_dir = mirrors / repo.replace("/", "+") / "repo"
        done = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"],
                              capture_output=True)
        return done.stdout.decode("utf-8") if done.returncode == 0 else None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", default=str(ROOT / "data/screening/labels/external.jsonl"))
    parser.add_argument("--files", type=Path, help="folder of source files as owner/repo/path")
    parser.add_argument("--git-mirrors", type=Path, help="folder of bare repositories as owner+repo/repo")
    parser.add_argument("--out", default=str(ROOT / "var/external.jsonl"))
    args = parser.parse_args(argv)
    if not args.files and not args.git_mirrors:
        parser.error("give --files or --git-mirrors")
    sources: dict[str, str | None] = {}
    rows, missing, mismatched = [], 0, 0
    for line in Path(args.labels).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        label = json.loads(line)
        origin = label["origin"]
        if origin not in sources:
            sources[origin] = read_origin(origin, args.files, args.git_mirrors)
        content = sources[origin]
        if content is None:
            missing += 1
            continue
        start, end = label["span"]
        text = content[start:end]
        if label.get("encoding") == "csv":
            text = text.replace('""', '"')
        source = label["key"].split(":", 1)[0]
        if f"{source}:{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}" != label["key"]:
            mismatched += 1
            continue
        rows.append({"text": text, "source": source, "licence": label.get("licence", ""), "origin": origin})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} rows written to {out}; {missing} whose source file is missing; "
          f"{mismatched} whose text no longer matches its key")
    return 0 if rows and not mismatched else 1


if __name__ == "__main__":
    sys.exit(main())
