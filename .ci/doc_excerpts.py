"""Checks that every code block marked `<!-- excerpt: PATH -->` in a Markdown file is an excerpt of PATH, so
the snippets a document shows are the code CI runs.

Usage: doc_excerpts.py FILE.md...
A block may skip lines with a line that is only `...`, `# ...` or `// ...`; each run of lines between such
markers must appear in PATH as consecutive lines, in order. Indentation and trailing spaces are ignored.
"""

import re
import sys
from pathlib import Path

ELISIONS = {"...", "# ...", "// ..."}


def chunks(block):
    current = []
    for line in block.splitlines():
        if line.strip() in ELISIONS:
            yield current
            current = []
        else:
            current.append(line.strip())
    yield current


def find(lines, chunk, start):
    while chunk and not chunk[0]:
        chunk = chunk[1:]
    while chunk and not chunk[-1]:
        chunk = chunk[:-1]
    if not chunk:
        return start
    for i in range(start, len(lines) - len(chunk) + 1):
        if lines[i : i + len(chunk)] == chunk:
            return i + len(chunk)
    return None


def check(doc):
    root = Path(__file__).resolve().parent.parent
    text = doc.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- excerpt: (\S+) -->\s*```[a-z]*\n(.*?)```", text, re.S)
    if not blocks:
        sys.exit(f"{doc}: no block marked 'excerpt: PATH'")
    failures = 0
    for path, block in blocks:
        lines = [line.strip() for line in (root / path).read_text(encoding="utf-8").splitlines()]
        position = 0
        for chunk in chunks(block):
            found = find(lines, chunk, position)
            if found is None:
                failures += 1
                shown = "\n    ".join(line for line in chunk if line)
                print(f"{doc}: not in {path} (after line {position}):\n    {shown}", file=sys.stderr)
                break
            position = found
    if failures:
        print(f"{doc}: {failures} of {len(blocks)} excerpts differ from the code they quote", file=sys.stderr)
        return False
    print(f"{doc}: {len(blocks)} excerpts match the code they quote")
    return True


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    results = [check(Path(doc)) for doc in sys.argv[1:]]
    if not all(results):
        sys.exit(1)


if __name__ == "__main__":
    main()
