"""Smoke tests of the ``stnlab`` command line: help and version."""

from __future__ import annotations

import subprocess
import sys

import pytest

import stnlab
from stnlab import cli


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stnlab", *args], capture_output=True, text=True, timeout=120
    )


def test_help_subprocess():
    result = run_module("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: stnlab")
    assert "Spatial Transformer Networks" in result.stdout


def test_version_subprocess():
    result = run_module("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"stnlab {stnlab.__version__}"


def test_main_without_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "usage: stnlab" in capsys.readouterr().out


def test_main_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"stnlab {stnlab.__version__}"


def test_main_unknown_command_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
