"""The shape of the package, checked: no import cycle, front ends that only translate, modules of a readable size."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "seg2sat"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every import between the package's modules, at the top of a module or inside a function alike."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join([*base, *([node.module] if node.module else [])])
                names = [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for imported in names:
                while imported and imported not in modules:
                    imported = imported.rpartition(".")[0]
                if imported and imported != name:
                    graph[name].add(imported)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_front_ends_leave_loading_fallback_and_queueing_to_the_engine():
    """Only the engine loads the model, falls back to the renderer or queues for the device."""
    front_ends = [p for p in PACKAGE.rglob("*.py") if p.parent.name in ("serving", "webui") or p.name.endswith("cli.py")]
    core_only = ("load_pipeline(", "DeviceGate(", "threading.Lock()  # device", "pipeline_or_fallback")
    offenders = [f"{p.relative_to(PACKAGE)}: {word}" for p in front_ends for word in core_only
                 if word in p.read_text(encoding="utf-8")]
    assert offenders == []


FLAG = re.compile(r"(?<![\w-])--[a-z]")
"""A command-line flag written into a sentence (``--resolution``), not a dash in prose or an em rule."""
FRONT_END_FILES = ("cli.py", "options.py", "doctor.py")
WORDS_FOR_ARGPARSE = ("help", "description", "epilog")


def core_modules() -> list[Path]:
    """Every module that is not a front end: its messages reach the CLI, the servers and the page alike."""
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name not in FRONT_END_FILES
            and not p.name.endswith("_cli.py") and "testing" not in p.relative_to(PACKAGE).parts[:-1]]


def _left_out(tree: ast.AST) -> set[int]:
    """Ids of the string constants that are no message: docstrings (any bare string) and argparse's help texts."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Constant, ast.JoinedStr)):
            skipped.update(id(n) for n in ast.walk(node.value))
        if isinstance(node, ast.keyword) and node.arg in WORDS_FOR_ARGPARSE:
            skipped.update(id(n) for n in ast.walk(node.value))
    return skipped


def flags_in_messages(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string constant of ``source`` that names a flag, docstrings and help= left out."""
    tree = ast.parse(source)
    skipped = _left_out(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped
            and FLAG.search(node.value)]


NOT_YET_SPELLED = {
    "pipelines.py", "weights.py",  # `seg2sat download --dir DIR`: another command to run, written out
    "serving/guard.py", "webui/backends.py",  # server settings, said as SEG2SAT_* and --flag inline
    "synth/card.py", "synth/filter.py", "synth/layouts.py", "synth/run.py", "synth/seeds.py", "synth/sources.py",
    "training/arguments.py", "training/checkpoints.py", "training/data.py", "training/hub.py", "training/loop.py",
    "training/models.py",  # the training script's own options, one front end only
}
"""Core modules whose messages still write flags (issue 25): each leaves this list when its texts name fields."""


def test_core_messages_name_fields_not_flags():
    """The core writes `resolution`, each front end spells it (--resolution, resolution, "number of m/px")."""
    found = {str(p.relative_to(PACKAGE)): flags_in_messages(p.read_text(encoding="utf-8")) for p in core_modules()}
    offenders = [f"{name}:{line}: {text!r}" for name, hits in found.items() if name not in NOT_YET_SPELLED
                 for line, text in hits]
    assert offenders == []
    assert sorted(name for name in NOT_YET_SPELLED if not found.get(name)) == []  # done: take it off the list


def test_the_flag_finder_finds_a_flag_in_a_message_only():
    source = ('"""Pass --yes."""\n'
              'def f(x):\n    """--yes docstring."""\n    p.add_argument("--yes", help="see --size")\n'
              '    raise ValueError(f"{x}: pass --yes, not -- dashes or a--b")\n')
    assert [line for line, _ in flags_in_messages(source)] == [4, 5]
