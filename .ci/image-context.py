"""Checks the container image's build context: the files .dockerignore lets through load as the cargo
workspace, so `docker build` cannot fail at its first cargo command for a missing manifest (this machine
has no Docker engine to try it).

Only the forms .dockerignore uses are understood: `*` (leave everything out), then `!path` lines (put
this file or directory back). Any other line fails the check instead of being misread.
usage: python3 .ci/image-context.py
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines or lines[0] != "*":
        print("image context: .dockerignore must start by leaving everything out (`*`)")
        return 1
    problems = []
    with tempfile.TemporaryDirectory() as context:
        for line in lines[1:]:
            if not line.startswith("!") or any(c in line for c in "*?[]"):
                problems.append(f"not understood: {line!r}")
                continue
            path = line[1:].strip("/")
            source, copy = ROOT / path, Path(context) / path
            if not source.exists():
                problems.append(f"{path} is let through but does not exist")
            elif source.is_dir():
                shutil.copytree(source, copy)
            else:
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, copy)
        loaded = subprocess.run(
            ["cargo", "metadata", "--no-deps", "--offline", "--locked", "--format-version", "1"],
            cwd=context,
            capture_output=True,
            text=True,
        )
        if loaded.returncode != 0:
            problems.append("cargo cannot load the workspace from it:\n" + loaded.stderr.strip())
    for problem in problems:
        print(f"image context: {problem}")
    if problems:
        return 1
    print(f"image context: {len(lines) - 1} paths let through; cargo loads the workspace from them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
