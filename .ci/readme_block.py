"""Prints the fenced code block that follows `<!-- ci: NAME -->` in a Markdown file, so CI runs the
README's commands exactly as a reader would copy them."""

import re
import sys

path, name = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
match = re.search(r"<!-- ci: " + re.escape(name) + r" -->\s*```[a-z]*\n(.*?)```", text, re.S)
if not match:
    sys.exit(f"no block marked 'ci: {name}' in {path}")
print(match.group(1), end="")
