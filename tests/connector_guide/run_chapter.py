"""
Runs one chapter of the connector guide as a reader would: `python run_chapter.py CHAPTER.md WORKDIR`.

Python blocks share one namespace and run with WORKDIR as the current folder; sh blocks run with bash from
the repository's root and hand what they export to the blocks after them; js blocks run with node in
WORKDIR. Prints a line before each block; exits 1 at the first block that fails, naming it.
"""

import linecache
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from snippets import blocks

ROOT = Path(__file__).resolve().parents[2]


def run_sh(code: str, env: dict) -> None:
    with tempfile.NamedTemporaryFile(prefix="guide-env-", delete=False) as dump:
        dump_path = dump.name
    try:
        script = f"set -eo pipefail\n{code}\nenv -0 > {dump_path}\n"
        subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, check=True)
        exported = Path(dump_path).read_bytes().split(b"\0")
    finally:
        os.unlink(dump_path)
    env.clear()
    env.update(line.decode().split("=", 1) for line in exported if b"=" in line)
    env.pop("_", None)


def run_js(code: str, name: str, env: dict, workdir: Path) -> None:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise RuntimeError(
            "node is not installed: the guide's JavaScript blocks need it (make test installs it)"
        )
    script = workdir / f"{name}.js"
    script.write_text(code)
    subprocess.run([node, str(script)], cwd=workdir, env=env, check=True)


def main(chapter: Path, workdir: Path) -> int:
    namespace: dict = {"__name__": "__guide__"}
    os.chdir(workdir)
    for block in blocks(chapter.read_text()):
        where = block.where(chapter)
        print(f"--- {block.kind} block at {where}", flush=True)
        try:
            if block.kind == "python":
                linecache.cache[where] = (len(block.code), None, block.code.splitlines(True), where)
                exec(compile(block.code, where, "exec"), namespace)  # noqa: S102 - the guide's own block
            elif block.kind == "sh":
                run_sh(block.code, os.environ)
            else:
                run_js(block.code, where.replace(":", "-").replace(".", "-"), dict(os.environ), workdir)
        except BaseException as exc:  # a SystemExit from a block is a failure too
            traceback.print_exc()
            print(f"FAILED: the {block.kind} block at {where}: {exc!r}", flush=True)
            return 1
        sys.stdout.flush()
    print("--- all blocks ran", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()))
