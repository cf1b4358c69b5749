"""The architecture is checked, not only stated: import-linter's contracts in pyproject.toml
hold for the source tree, and an import that breaks one makes the check fail.

A wrong import is tried on a copy of the package: ``PYTHONPATH`` puts the copy before the
installed (editable) package, and ``lint-imports`` reads the repository's pyproject.toml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS = "the study's stages import only earlier stages; the library imports nothing of the study"
TORCH_FREE = "the config is torch-free, so `stnlab --help` starts fast"
ACYCLIC = "no import circles between the modules of any package"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.is_file(), reason="no lint-imports here")


def lint_imports(cwd: Path, first: Path | None = None) -> tuple[int, str]:
    """Run lint-imports with the repository's contracts; ``first``: a folder searched for
    ``stnlab`` before the installed package. Returns the exit status and the output, its
    lines joined (the report wraps long contract names)."""
    env = dict(os.environ)
    if first is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(first), env.get("PYTHONPATH")]))
    command = [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def test_the_source_tree_keeps_every_contract(tmp_path):
    status, out = lint_imports(tmp_path)
    assert status == 0, out
    for contract in (LAYERS, TORCH_FREE, ACYCLIC):
        assert f"{contract} KEPT" in out


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("config/vocabulary.py", "import stnlab.experiment", LAYERS),  # a layer imports up
        ("transforms.py", "from stnlab import models", LAYERS),  # the library imports the study
        ("config/vocabulary.py", "import torch", TORCH_FREE),
        ("runs/atomic.py", "import stnlab.runs.run_folder", ACYCLIC),  # run_folder imports atomic
    ],
)
def test_a_wrong_import_breaks_its_contract(tmp_path, module, line, broken):
    copy = tmp_path / "src" / "stnlab"
    shutil.copytree(ROOT / "src" / "stnlab", copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    status, out = lint_imports(tmp_path, first=copy.parent)
    assert status == 1, out
    assert f"{broken} BROKEN" in out  # (an import up a layer closes a circle too)
