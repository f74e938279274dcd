"""
The repository is its own contract: no tracked file sends a reader to documents it does not hold (the design
notes it was started from, `API.md`, `DESIGN.md`, `STYLE.md`, or a `shared/` folder beside it), and no
Markdown document links to a path, or a heading, that is not there.

Checked in Markdown, outside code blocks: relative links `[text](path)` and `[text](path#heading)` (a
heading as GitHub makes its anchor, or an `<a id="…">`), and backticked paths that start with one of the
repository's top-level folders (`docs/…`, `examples/…`), read from the repository's root.
"""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

OUTSIDE = re.compile(r"\b(?:API|DESIGN|STYLE)\.md\b|shared/")
CODE_BLOCK = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [name for name in out.splitlines() if (ROOT / name).is_file()]


def refers_outside(names: list[str], root: Path = ROOT) -> list[str]:
    found = []
    for name in names:
        if name == THIS:
            continue
        try:
            text = (root / name).read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    text = document.read_text()
    found, seen = set(HTML_ANCHOR.findall(text)), {}
    for heading in HEADING.findall(CODE_BLOCK.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def broken_links(documents: list[str], top_folders: set[str], root: Path = ROOT) -> list[str]:
    folders = "|".join(map(re.escape, sorted(top_folders)))
    backticked = re.compile(r"`((?:" + folders + r")/[\w./-]*)`")
    broken = []
    for name in documents:
        document = root / name
        text = CODE_BLOCK.sub("", document.read_text())
        for target in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            destination = (document.parent / path).resolve() if path else document
            if not destination.exists():
                broken.append(f"{name}: ({target}): no such path")
            elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
                broken.append(f"{name}: ({target}): no such heading")
        for path in backticked.findall(text):
            if not (root / path.rstrip("/")).exists():
                broken.append(f"{name}: `{path}`: no such path")
    return broken


def test_no_tracked_file_refers_to_documents_outside_the_repository():
    found = refers_outside(tracked())

    assert not found, "cite docs/connectors/… or docs/architecture.md instead:\n" + "\n".join(found)


def test_the_check_finds_a_reference_outside(tmp_path):
    (tmp_path / "a.py").write_text('"""As API.md says."""\n')
    (tmp_path / "b.md").write_text("See `../shared/notes.txt`.\n")
    (tmp_path / "c.md").write_text("See docs/connectors/contract.md and MY_API.md.\n")

    found = refers_outside(["a.py", "b.md", "c.md"], tmp_path)

    assert [line.split(":")[0] for line in found] == ["a.py", "b.md"]


def test_every_markdown_link_and_path_exists():
    names = tracked()
    documents = [name for name in names if name.endswith(".md")]
    top_folders = {name.split("/", 1)[0] for name in names if "/" in name}
    assert "docs/connectors/contract.md" in documents and len(documents) > 20

    broken = broken_links(documents, top_folders)

    assert not broken, "\n".join(broken)


def test_the_link_check_finds_what_is_broken(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text('# A heading, with commas\n\n<a id="x-1"></a>\n')
    (tmp_path / "docs" / "a.md").write_text(
        "[ok](there.md) [ok](there.md#a-heading-with-commas) [ok](there.md#x-1) [ok](#own) [ok](https://x.y/z)\n"
        "`docs/there.md` and `docs/` exist.\n\n## Own\n\n"
        "[bad](gone.md) [bad](there.md#nope) `docs/gone.py`\n\n```sh\ncat `docs/in-a-block.md`\n```\n"
    )
    broken = broken_links(["docs/a.md"], {"docs"}, tmp_path)

    assert broken == [
        "docs/a.md: (gone.md): no such path",
        "docs/a.md: (there.md#nope): no such heading",
        "docs/a.md: `docs/gone.py`: no such path",
    ]
