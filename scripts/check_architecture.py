"""
The structural checks `make lint` adds to import-linter's contracts (pyproject.toml, docs/architecture.md):

1. No import circle between any two modules of the hub, counting imports placed inside functions — grimp
   sees those, so a circle cannot be dodged by moving an import into a function. import-linter checks
   layers between packages; this checks every module against every other.
2. No `apps.get_model(...)` outside migrations: a module reaches another app's models by importing them (the
   layers say which it may), never by a string. Data-migration helpers (functions taking the historical
   `apps` and a `schema_editor`, as RunPython calls them) are migrations too.
3. No module outside migrations longer than MAX_LINES: past that, a file does more than one job.

Prints each finding with its place and exits 1 when there is any; exits 0 quietly otherwise.
"""

import ast
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
# The hub's packages: those the import contract (pyproject.toml) layers.
PACKAGES = tuple(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
)
MAX_LINES = 500


def tracked_python_files() -> list[Path]:
    """Every Python file of the project (the packages, tests, bench, examples, scripts)."""
    folders = (*PACKAGES, "harness", "tests", "bench", "examples", "scripts")
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def is_migration(path: Path) -> bool:
    return "migrations" in path.relative_to(ROOT).parts


def import_cycles(packages=PACKAGES) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*packages, cache_dir=None)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            for target in targets:
                if target in on_stack and index[target] > index[node]:
                    low[node] = min(low[node], low[target])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def cycle_findings(packages=PACKAGES) -> list[str]:
    findings = []
    for component in import_cycles(packages):
        findings.append("import circle between " + ", ".join(component))
    return findings


def _is_migration_operation(function: ast.FunctionDef) -> bool:
    names = [arg.arg for arg in function.args.args]
    return names[:2] == ["apps", "schema_editor"]


def get_model_findings(path: Path, tree: ast.AST, root: Path = ROOT) -> list[str]:
    findings = []

    def visit(node, allowed):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            allowed = allowed or _is_migration_operation(node)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get_model"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "apps"
            and not allowed
        ):
            findings.append(f"{path.relative_to(root)}:{node.lineno}: apps.get_model outside a migration")
        for child in ast.iter_child_nodes(node):
            visit(child, allowed)

    visit(tree, False)
    return findings


def file_findings(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text()
    lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    findings = []
    if lines > MAX_LINES:
        findings.append(f"{path.relative_to(root)}: {lines} lines (at most {MAX_LINES} outside migrations)")
    return findings + get_model_findings(path, ast.parse(text, filename=str(path)), root)


def main() -> int:
    findings = cycle_findings()
    for path in tracked_python_files():
        if not is_migration(path):
            findings.extend(file_findings(path))
    for finding in findings:
        print(finding)
    if findings:
        print(f"\n{len(findings)} architecture finding(s); docs/architecture.md explains each rule.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
