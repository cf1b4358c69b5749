"""Print the shape of src/stnlab: lines per package, longest functions, local imports, fmt: skip.

Used for the before/after figures of a restructuring (python tools/code_stats.py [ROOT]).
"""

import ast
import sys
from collections import Counter
from pathlib import Path


def main(root: Path) -> None:
    """Print the figures for the package at ``root``."""
    lines: Counter[str] = Counter()
    functions: list[tuple[int, str]] = []
    local_imports = skips = 0
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(root)
        group = rel.parts[0] if len(rel.parts) > 1 else f"{rel.stem}.py"
        lines[group] += len(text.splitlines())
        skips += text.count("# fmt: skip")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                functions.append((length, f"{rel}:{node.lineno} {node.name}"))
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        local_imports += 1
    print(f"source lines: {sum(lines.values())}")
    for group, n in sorted(lines.items(), key=lambda kv: -kv[1]):
        print(f"  {group:24} {n:6}")
    print("ten longest functions:")
    for length, where in sorted(functions, reverse=True)[:10]:
        print(f"  {length:4}  {where}")
    print(f"function-local imports: {local_imports}")
    print(f"# fmt: skip markers: {skips}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "src/stnlab"))
