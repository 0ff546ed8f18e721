"""The hand-written stub of the native module must match what the module exports."""

import ast
from pathlib import Path

import seqrec._core as core

STUB = Path(core.__file__).with_name("_core.pyi") if Path(core.__file__).with_name("_core.pyi").exists() else (
    Path(__file__).resolve().parents[1] / "python" / "seqrec" / "_core.pyi"
)


def test_stub_lists_every_class_and_method() -> None:
    tree = ast.parse(STUB.read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    exported = {name for name in dir(core) if not name.startswith("_") and isinstance(getattr(core, name), type)}
    assert exported == set(classes), (exported, set(classes))
    for name, node in classes.items():
        in_stub = {n.name for n in node.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
        real = {m for m in dir(getattr(core, name)) if not m.startswith("_")}
        assert real == in_stub, (name, real ^ in_stub)
