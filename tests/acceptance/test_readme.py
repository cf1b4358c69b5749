"""The README's Python examples run as written (docs that match behaviour)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:  # later blocks use names that earlier ones define, as a reader would
        exec(compile(block, str(README), "exec"), namespace)
    assert tuple(namespace["y"].shape) == (8, 1, 20, 20)
    assert tuple(namespace["grid"].shape) == (8, 20, 20, 2)
    assert (namespace["v"] - namespace["v_ref"]).abs().max() < 1e-5
