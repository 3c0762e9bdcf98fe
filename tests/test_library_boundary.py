"""The library never imports streamlit (outside its UI module)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "d2debug"


def test_no_streamlit_import_in_source():
    offenders = []
    for py in PKG.rglob("*.py"):
        if "ui" in py.relative_to(PKG).parts:
            continue
        for node in ast.walk(ast.parse(py.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{py.name}: {n}" for n in names if n.split(".")[0] == "streamlit"]
    assert not offenders


def test_importing_the_library_does_not_load_streamlit():
    code = (
        "import sys, d2debug, d2debug.cli, d2debug.stages, d2debug.run, d2debug.model, d2debug.compare;"
        "sys.exit(1 if any(m.split('.')[0] == 'streamlit' for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=PKG.parent).returncode == 0
