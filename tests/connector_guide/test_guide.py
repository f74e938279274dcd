"""
Every code block of the connector guide (docs/connectors/) runs, as written, against a running hub: real
gunicorn, Celery worker and beat (conftest.py). A chapter whose code no longer works against the API fails
here, naming the block.
"""

import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.procs import BIN, PYTHON, ROOT

from .conftest import ROLES, organization
from .snippets import blocks, directive

GUIDE = ROOT / "docs" / "connectors"
CHAPTERS = sorted(GUIDE.glob("[0-9][0-9]-*.md"))
RUNNER = Path(__file__).with_name("run_chapter.py")
CHAPTER_TIMEOUT = 300  # seconds; a chapter that waits for a webhook waits at most a minute for it
PARALLEL = 3  # chapters running at once


def test_the_guide_has_chapters_and_the_index_links_each():
    assert len(CHAPTERS) >= 10
    index = (GUIDE / "README.md").read_text()
    for chapter in CHAPTERS:
        assert f"({chapter.name})" in index, f"docs/connectors/README.md does not link {chapter.name}"


def run(hub, chapter: Path, workdir: Path) -> tuple[subprocess.CompletedProcess, float]:
    """The chapter's blocks, in order, as a reader runs them, with the key its directive names."""
    role = directive(chapter.read_text()).get("key", "none")
    with ORGANIZATION_LOCK:  # the Hub object keeps the last organization's keys: one setup at a time
        org = organization(hub, f"guide-{chapter.stem[:2]}-{os.getpid()}")
    env = {**hub.env, **org["env"], "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if role != "none":
        env["SWITCHYARD_KEY"] = org["keys"][role]
    workdir.mkdir(parents=True)
    started = time.monotonic()
    done = subprocess.run(
        [PYTHON, str(RUNNER), str(chapter), str(workdir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHAPTER_TIMEOUT,
        check=False,
    )
    return done, time.monotonic() - started


ORGANIZATION_LOCK = threading.Lock()


@pytest.fixture(scope="session")
def chapter_runs(guide_hub, request, tmp_path_factory):
    """
    Every selected chapter, started at once, PARALLEL at a time: each has an organization of its own and
    spends most of its time waiting on the hub (engines, webhooks), so they share it as readers would.
    """
    selected = [
        item.callspec.params["chapter"]
        for item in request.session.items
        if item.originalname == "test_every_block_of_the_chapter_runs_against_a_live_hub"
    ]
    base = tmp_path_factory.mktemp("chapters")
    with ThreadPoolExecutor(PARALLEL) as pool:
        runs = {chapter: pool.submit(run, guide_hub, chapter, base / chapter.stem) for chapter in selected}
        yield runs
        for future in runs.values():
            future.cancel()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.stem)
def test_every_block_of_the_chapter_runs_against_a_live_hub(chapter_runs, chapter):
    # given a chapter that marks what it needs
    text = chapter.read_text()
    words = directive(text)
    assert blocks(text) or "prose" in words, (
        f"{chapter.name} has no block to run (mark it <!-- guide: prose -->)"
    )
    assert words.get("key", "none") in (*ROLES, "none"), f"{chapter.name}: unknown key={words['key']}"

    # when its blocks ran in order against the hub, in an organization of its own (chapter_runs)
    done, seconds = chapter_runs[chapter].result(timeout=CHAPTER_TIMEOUT * len(CHAPTERS))

    # then every one of them did
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{chapter.name} failed after {seconds:.1f} s:\n{output}"
    assert output.count("--- ") == len(blocks(text)) + 1, output


# --- the runner itself ---------------------------------------------------------------------------------


PAGE = """<!-- guide: key=3pl -->
# A page

```python
x = 1
```

```json
{"not": "run"}
```

1. In a list:

   ```sh
   echo "$X"
   ```

```js
console.log(1)
```

```text
output
```
"""


def test_blocks_are_the_python_sh_and_js_fences_in_order_with_their_lines():
    found = blocks(PAGE)
    assert [(block.kind, block.line) for block in found] == [("python", 4), ("sh", 14), ("js", 18)]
    assert found[1].code == 'echo "$X"\n'  # the list's indent removed
    assert directive(PAGE) == {"key": "3pl"}
    assert directive("# no directive") == {}


def run_page(tmp_path, text, **env):
    page = tmp_path / "page.md"
    page.write_text(text)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return subprocess.run(
        [PYTHON, str(RUNNER), str(page), str(work)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_runner_shares_python_names_and_exported_variables_between_blocks(tmp_path):
    page = (
        "```sh\nexport GREETING=hello\n```\n\n"
        "```python\nimport os\nword = os.environ['GREETING']\n```\n\n"
        "```python\nassert word == 'hello'\nopen('seen.txt', 'w').write(word)\n```\n"
    )
    done = run_page(tmp_path, page)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "work" / "seen.txt").read_text() == "hello"


@pytest.mark.parametrize(
    "failing",
    ["```python\nassert 1 == 2\n```\n", "```sh\nfalse\n```\n", "```sh\nfalse | cat\n```\n"],
    ids=["python", "sh", "sh-pipe"],
)
def test_the_runner_fails_at_the_first_failing_block_and_names_it(tmp_path, failing):
    done = run_page(tmp_path, "```python\nx = 1\n```\n\n" + failing + "\n```python\nopen('ran', 'w')\n```\n")
    assert done.returncode == 1
    assert "FAILED: the " in done.stdout and "page.md:5" in done.stdout
    assert not (tmp_path / "work" / "ran").exists()
