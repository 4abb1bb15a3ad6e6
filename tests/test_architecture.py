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


FLAG = re.compile(r"(?<![\w-])--[a-z{]")
"""A command-line flag written into a sentence (``--resolution``, or ``--{name}`` built), not a dash in prose
or an em rule."""
FRONT_END_FILES = ("cli.py", "options.py", "doctor.py")
WORDS_FOR_ARGPARSE = ("help", "description", "epilog")


def core_modules() -> list[Path]:
    """Every module that is not a front end: its messages reach the CLI, the servers and the page alike."""
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name not in FRONT_END_FILES
            and not p.name.endswith("_cli.py") and "testing" not in p.relative_to(PACKAGE).parts[:-1]]


def _left_out(tree: ast.AST) -> set[int]:
    """Ids of the string constants that are no message: docstrings (any bare string), argparse's help texts and
    the option strings an ``add_argument`` call declares."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            skipped.update(id(n) for arg in node.args for n in ast.walk(arg))
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Constant, ast.JoinedStr)):
            skipped.update(id(n) for n in ast.walk(node.value))
        if isinstance(node, ast.keyword) and node.arg in WORDS_FOR_ARGPARSE:
            skipped.update(id(n) for n in ast.walk(node.value))
    return skipped


COMMAND_LINE = re.compile(r"`(?:seg2sat|hf|accelerate) [^`]*`|^(?:seg2sat|hf|accelerate) .*$", re.MULTILINE)
"""Another program's command written out in full (`` `seg2sat download --dir DIR` ``, a card's command line):
its flags are that command's, not fields of the one running."""


def _texts(tree: ast.AST, skipped: set[int]) -> list[tuple[int, str]]:
    """(line, text) of each string: an f-string as one text (its values as ``{}``), so a command line built
    with values reads whole."""
    found, parts = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and id(node) not in skipped:
            parts.update(id(v) for v in node.values)
            found.append((node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)))
    found += [(node.lineno, node.value) for node in ast.walk(tree) if isinstance(node, ast.Constant)
              and isinstance(node.value, str) and id(node) not in skipped | parts]
    return found


def flags_in_messages(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string of ``source`` that names a flag, docstrings, help= and command lines left out."""
    tree = ast.parse(source)
    return [(line, text) for line, text in _texts(tree, _left_out(tree)) if FLAG.search(COMMAND_LINE.sub("", text))]


def test_core_messages_name_fields_not_flags():
    """The core writes `resolution`, each front end spells it (--resolution, resolution, "number of m/px")."""
    found = {str(p.relative_to(PACKAGE)): flags_in_messages(p.read_text(encoding="utf-8")) for p in core_modules()}
    offenders = [f"{name}:{line}: {text!r}" for name, hits in found.items() for line, text in hits]
    assert offenders == []


def test_the_flag_finder_finds_a_flag_in_a_message_only():
    source = ('"""Pass --yes."""\n'
              'def f(x):\n    """--yes docstring."""\n    p.add_argument("--yes", f"--{x}", help="see --size")\n'
              '    raise ValueError(f"{x}: pass --yes, not -- dashes or a--b")\n'
              '    say(f"run `seg2sat download --dir {x}` or `hf download {x} --local-dir D`, not `--dir`")\n'
              '    CARD = "```\\nseg2sat generate m.png --out out\\n```\\nthen --out"\n'
              '    say("`accelerate launch --x` then" f" --{x}")\n')
    assert sorted(line for line, _ in flags_in_messages(source)) == [5, 6, 7, 8]  # 4 declares options


def test_each_command_spells_a_field_with_its_own_option():
    """The same `field` reads as synthesize's positional, its short flag, or train's underscore flag."""
    from seg2sat.cli import build_parser
    from seg2sat.options import command_parser, spell

    parser = build_parser()
    text = "`source`: empty; `num_images` 0; `fallback` off; `resolution` 7"
    assert spell(text, "cli", command_parser(parser, "synthesize")) == "SOURCE: empty; -n 0; --no-fallback; --resolution 7"
    assert spell(text, "cli") == "--from: empty; `num_images` 0; --no-fallback; --resolution 7"  # no command: generic
    assert spell("`train_data_dir` or `dataset_name`", "cli", command_parser(parser, "train")) == (
        "--train_data_dir or --dataset_name")
