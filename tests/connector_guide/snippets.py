"""
The code blocks of the connector guide (docs/connectors/), as the guide's test runs them.

A chapter is a Markdown file; its fenced blocks run in order, as a reader would run them in one terminal
and one Python session:

* ```python blocks run in one namespace per chapter (a later block uses what an earlier one defined);
* ```sh blocks run with bash -e from the repository's root (where `manage.py` is), and what they `export`
  is in the environment of every later block;
* ```js blocks run with node, in the chapter's working folder (the python blocks' current folder too);
* any other fence (text, json, http, console) is an illustration and is not run.

A chapter's first line may be a directive for the test: `<!-- guide: key=channel -->` names the integration
whose key SWITCHYARD_KEY holds (channel, 3pl, erp, or none). Written by hand, not with a doctest or
notebook runner: neither runs Python, shell and JavaScript blocks of one page in one sequence.
"""

import re
from dataclasses import dataclass
from pathlib import Path

RUN = {
    "python": "python",
    "py": "python",
    "sh": "sh",
    "bash": "sh",
    "shell": "sh",
    "js": "js",
    "javascript": "js",
}
FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)
DIRECTIVE = re.compile(r"<!--\s*guide:(?P<words>[^>]*)-->")


@dataclass(frozen=True)
class Block:
    kind: str  # python | sh | js
    code: str
    line: int  # where the block starts in its file, 1-based

    def where(self, path: Path) -> str:
        return f"{path.name}:{self.line}"


def blocks(text: str) -> list[Block]:
    """The runnable blocks of a chapter, in order (indented fences, e.g. in lists, included)."""
    found = []
    for match in FENCE.finditer(text):
        kind = RUN.get(match["lang"].lower())
        if kind is None:
            continue
        indent = len(match["indent"])
        code = "\n".join(line[indent:] for line in match["code"].splitlines())
        found.append(Block(kind, code + "\n", text.count("\n", 0, match.start()) + 1))
    return found


def directive(text: str) -> dict[str, str]:
    """The chapter's `<!-- guide: name=value ... -->` words (none: {})."""
    match = DIRECTIVE.search(text)
    if not match:
        return {}
    words = dict(word.split("=", 1) if "=" in word else (word, "") for word in match["words"].split())
    return words
