"""The docs name tests as proof (docs/security.md's table): every `tests/...py::name` they cite exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def test_every_test_a_doc_cites_exists() -> None:
    cited = 0
    for doc in sorted((REPO / "docs").glob("*.md")):
        for path, name in REFERENCE.findall(doc.read_text()):
            module = REPO / path
            assert module.is_file(), f"{doc.name} cites {path}, which does not exist"
            if name:
                names = {
                    node.name
                    for node in ast.walk(ast.parse(module.read_text()))
                    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                }
                assert name in names, f"{doc.name} cites {path}::{name}, which does not exist"
            cited += 1
    assert cited >= 10  # security.md's table alone cites more
