"""The shape of the package: imports point one way (core <- tools <- drivers <- CLI/UI), there are no import
cycles (imports inside functions count), no module imports another's private names, and functions stay short.

Read from the source with ``ast``, so a violation fails here before it tangles the code."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "d2debug"

# Top-level part of d2debug -> layer. A module may import its own layer or a lower one, never a higher one.
LAYERS = {
    # 0: the core: one image through one pipeline, and the vocabulary every tool speaks.
    **dict.fromkeys(("errors", "compat", "version", "text", "files", "samples", "stages", "arch", "config", "checkpoint",
                     "usercode", "model", "run", "compare", "stats", "render", "coco", "findings", "pitfalls", "envinfo",
                     "memory", "serving", "__init__"), 0),
    # 1: the tools built on the core.
    **dict.fromkeys(("doctor", "audit", "session", "lessons", "config_diff", "testing", "demo", "deploy"), 1),
    # 2: what drives the tools from outside (benchmark, a real server, the Doctor's accuracy suites).
    **dict.fromkeys(("tools", "evaluation"), 2),
    # 3: the edges people use.
    **dict.fromkeys(("cli", "ui", "__main__"), 3),
}
MAX_FUNCTION_LINES = 85  # "about 80": a function longer than this does more than one job


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str, int]]:
    """``(imported d2debug module, name or '', line)`` for every import in ``module``, anywhere in the file."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "d2debug"]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, is_package)
            if target.split(".")[0] != "d2debug":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                # `from . import audit` imports the module d2debug.cli.audit; otherwise a name of `target`.
                out.append((sub, "", node.lineno) if sub in MODULES else (target, a.name, node.lineno))
    return out


def _graph(group=lambda m: m) -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for m in MODULES:
        for target, _name, _line in _imports(m):
            a, b = group(m), group(target)
            if a != b:
                g.setdefault(a, set()).add(b)
    return g


def _cycle(g: dict[str, set[str]]):
    """One import cycle as a list of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_of_the_package_has_a_layer():
    assert {_part(m) for m in MODULES} <= set(LAYERS), {_part(m) for m in MODULES} - set(LAYERS)


def test_no_import_cycles_between_modules():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_no_import_cycles_between_the_parts_of_the_package():
    g = _graph(lambda m: "d2debug." + _part(m))
    assert _cycle(g) is None, " -> ".join(_cycle(g))


def test_imports_point_down_the_layers():
    upward = []
    for m in MODULES:
        for target, _name, line in _imports(m):
            if LAYERS[_part(target)] > LAYERS[_part(m)]:
                upward.append(f"{MODULES[m].relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "\n".join(upward)


def test_no_private_names_imported_across_modules():
    private = []
    for m in MODULES:
        for target, name, line in _imports(m):
            hidden = name.startswith("_") and not name.startswith("__")
            if hidden or any(p.startswith("_") and p != "__init__" for p in target.split(".")):
                private.append(f"{MODULES[m].relative_to(ROOT)}:{line} imports {target}.{name}")
    assert not private, "\n".join(private)


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")) + [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_functions_stay_short(path):
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_the_checks_see_a_cycle_and_an_upward_import():
    # The checks themselves must be able to fail.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
    cli = {t for t, _n, _l in _imports("d2debug.cli")}
    assert {"d2debug.cli.common", "d2debug.cli.audit", "d2debug.errors"} <= cli  # relative imports resolved
    assert LAYERS[_part("d2debug.cli.audit")] > LAYERS[_part("d2debug.audit.runner")]
    assert LAYERS[_part("d2debug.evaluation.suite")] > LAYERS[_part("d2debug.doctor.diagnose")]


def test_session_state_keys_are_spelled_in_one_table():
    """Every dashboard widget/result key is a ``ui.state.Keys`` constant: a key typed as a literal anywhere else
    (a widget, a page, a test) would drift from the one the widget uses."""
    import re

    from d2debug.ui.state import Keys

    keys = {v for k, v in vars(Keys).items() if k.isupper()}
    assert len(keys) == len([k for k in vars(Keys) if k.isupper()]), "two names for one key"
    literal = re.compile(r"""["']((?:stage|d2debug|sb|deployed)_[a-z_]+)["']""")
    files = [*(PKG / "ui").glob("*.py"), *(ROOT / "app_pages").glob("*.py"), ROOT / "app.py",
             *(ROOT / "tests").glob("*.py")]
    found = {(p.relative_to(ROOT).as_posix(), m) for p in files if p != PKG / "ui" / "state.py"
             for m in literal.findall(p.read_text()) if m in keys}
    assert not found, sorted(found)
