"""A run or experiment folder's files are input too: each one truncated, garbled or missing,
for each command that reads it, gives one line naming the file (exit 2) and changes nothing,
unless the command can do without it (then it succeeds)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stnlab import cli

RUN = [
    "--model",
    "stn",
    "--size",
    "small",
    "--epochs",
    "2",
    "--eval-every",
    "1",
    "--threads",
    "1",
    "--quiet",
]
EXPERIMENT = 'preset = "smoke"\nmodels = ["stn"]\nseeds = [0]\n[train]\nthreads = 1\n'
RUN_IN_EXP = "runs/stn-s0"


@pytest.fixture(scope="module")
def made(tmp_path_factory, data_file) -> Path:
    """A finished run (run/), a finished experiment (exp/), an image and the data file."""
    root = tmp_path_factory.mktemp("made")
    assert cli.main(["train", "--data", str(data_file), "--out", str(root / "run"), *RUN]) == 0
    (root / "exp.toml").write_text(EXPERIMENT)
    argv = ["experiment", "--config", str(root / "exp.toml"), "--out", str(root / "exp")]
    assert cli.main([*argv, "--quiet"]) == 0
    Image.fromarray((np.eye(30) * 255).astype(np.uint8)).save(root / "digit.png")
    (root / "data.npz").symlink_to(data_file)  # the path the run was trained on
    return root


def _argv(command: str, folder: Path, made: Path) -> list[str]:
    data, toml = str((made / "data.npz").resolve()), str(made / "exp.toml")
    return {
        "train --resume": ["train", "--data", data, "--out", str(folder), *RUN, "--resume"],
        "evaluate": ["evaluate", str(folder), "--data", data],
        "predict": ["predict", str(folder), str(made / "digit.png")],
        "export": ["export", str(folder), "--onnx", str(folder.parent / "m.onnx"), "--no-check"],
        "report": ["report", str(folder)],
        "experiment": [
            "experiment",
            "--config",
            toml,
            "--out",
            str(folder),
            "--quiet",
            "--no-report",
        ],
    }[command]


# (command, which folder, what is removed first, the file to damage); a missing file some
# commands can do without: they succeed ("ok").
CASES = [
    ("train --resume", "run", None, "summary.json", {"missing": "ok"}),
    ("train --resume", "run", None, "final.safetensors", {}),
    ("train --resume", "run", None, "config.json", {"missing": "ok"}),
    ("train --resume", "run", "summary.json", "checkpoint.pt", {"missing": "ok"}),
    ("train --resume", "run", "summary.json", "metrics.jsonl", {}),
    *[
        (c, "run", None, f, {})
        for c in ("evaluate", "predict", "export")
        for f in ("config.json", "final.safetensors")
    ],
    ("report", "exp", None, "experiment.json", {}),
    ("report", "exp", None, "results.csv", {}),
    ("report", "exp", None, f"{RUN_IN_EXP}/metrics.jsonl", {"truncated": "ok"}),
    ("report", "exp", None, f"{RUN_IN_EXP}/predictions.npz", {}),
    ("report", "exp", None, f"{RUN_IN_EXP}/config.json", {}),
    ("report", "exp", None, f"{RUN_IN_EXP}/final.safetensors", {}),
    ("experiment", "exp", None, "experiment.json", {"missing": "ok"}),
    ("experiment", "exp", None, f"{RUN_IN_EXP}/config.json", {"missing": "ok"}),
    ("experiment", "exp", None, f"{RUN_IN_EXP}/summary.json", {"missing": "ok"}),
    ("experiment", "exp", None, f"{RUN_IN_EXP}/metrics.jsonl", {}),
    (
        "experiment",
        "exp",
        f"{RUN_IN_EXP}/summary.json",
        f"{RUN_IN_EXP}/checkpoint.pt",
        {"missing": "ok"},
    ),
]


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbled":
        path.write_bytes(b"\x00garbled\xff\xfe{[,\x00" + data[14:])
    else:
        path.unlink()


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("how", ["truncated", "garbled", "missing"])
@pytest.mark.parametrize(
    ("command", "which", "removed", "name", "tolerated"),
    CASES,
    ids=[f"{c[0].split()[0]}-{c[3].split('/')[-1]}{'-unfinished' * bool(c[2])}" for c in CASES],
)
def test_a_damaged_file(made, tmp_path, capsys, command, which, removed, name, tolerated, how):
    folder = tmp_path / which
    shutil.copytree(made / which, folder)
    if removed:
        (folder / removed).unlink()
    _damage(folder / name, how)
    before = _hashes(folder)
    code = cli.main(_argv(command, folder, made))
    err = capsys.readouterr().err
    if tolerated.get(how) == "ok":
        assert code == 0, err
        return
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(folder / name) in err or (
        Path(name).name in err and str(folder / Path(name).parent) in err
    ), err
    assert _hashes(folder) == before, "the folder changed"
