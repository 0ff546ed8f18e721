"""The hand-written stub of the native module must match what the module exports."""

import ast
from pathlib import Path

import seqrec._core as core
from conftest import ROOT

STUB = Path(core.__file__).with_name("_core.pyi") if Path(core.__file__).with_name("_core.pyi").exists() else (
    ROOT / "python" / "seqrec" / "_core.pyi"
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


def test_stub_signatures_match_the_runtime() -> None:
    """mypy's stubtest (as pydantic-core runs it): every parameter, default and class shape, not only names."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(core.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "mypy.stubtest", "seqrec._core"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
