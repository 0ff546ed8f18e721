"""conftest's shared helpers: ``require`` skips a missing test extra locally and fails it in CI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REQUIRE_EXTRAS, ROOT, require

MISSING = "seqrec_no_such_module"


def test_require_skips_a_missing_module_unless_extras_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_EXTRAS, raising=False)
    with pytest.raises(pytest.skip.Exception):
        require(MISSING)
    monkeypatch.setenv(REQUIRE_EXTRAS, "1")
    try:
        require(MISSING)
    except pytest.skip.Exception:  # a skip would propagate and pass for success: catch it to fail here
        pytest.fail(f"require skipped {MISSING} although {REQUIRE_EXTRAS}=1")
    except pytest.fail.Exception as e:
        assert f"{MISSING} does not import" in str(e)
    else:
        pytest.fail(f"require returned for {MISSING}")
    assert require("json") is json  # what is installed imports either way


@pytest.mark.parametrize(("required", "outcome"), [("0", "1 passed, 1 skipped"), ("1", "1 error")])
def test_a_test_file_that_requires_a_missing_extra_fails_the_run_in_ci(tmp_path: Path, required: str,
                                                                       outcome: str) -> None:
    # What CI sees: a test module that asks for a missing extra at import time, run by pytest.
    (tmp_path / "test_extra.py").write_text(f"from conftest import require\nrequire({MISSING!r})\n\n"
                                            "def test_it():\n    pass\n")
    (tmp_path / "test_other.py").write_text("def test_other():\n    pass\n")
    env = {**os.environ, REQUIRE_EXTRAS: required,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
                          str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    assert outcome in res.stdout, res.stdout[-2000:]
    assert (res.returncode != 0) == (required == "1"), res.stdout[-2000:]
