"""The import directions of docs/architecture.md, read from the source (every import, lazy ones included)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "resnetlab"

# What each part may import from resnetlab (besides itself, errors.py and files.py, which everything may use).
ALLOWED = {
    "data": set(),
    "models": {"data"},
    "multiseed": {"models"},
    "engine": {"data", "models", "multiseed"},
    "experiments": {"data", "models", "engine"},
    "bench": {"data", "models", "engine"},
    "deploy": {"data", "models", "engine"},
    "api": {"data", "models", "engine", "experiments", "deploy"},
    "__init__": {"api", "models"},
    "cli": {"data", "models", "engine", "experiments", "bench", "deploy", "resnetlab"},
    "__main__": {"cli"},
    "errors": set(),
    "files": set(),
}


def imports(path: Path) -> list[tuple[str, int]]:
    """(the resnetlab part imported, line) for every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "resnetlab":
                found.append((parts[1] if len(parts) > 1 else "resnetlab", node.lineno))
    return found


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_dependencies_point_one_way():
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = part_of(path)
        assert part in ALLOWED, f"{path}: a new part of the package; give it its place in ALLOWED and docs/architecture.md"
        for target, line in imports(path):
            if target not in (part, "errors", "files") and target not in ALLOWED[part]:
                broken.append(f"{path.relative_to(PACKAGE)}:{line} imports resnetlab.{target}")
    assert not broken, "imports against docs/architecture.md:\n" + "\n".join(broken)


def test_only_the_cli_parses_command_lines():
    """Library code takes plain values: no argparse namespace travels below cli/."""
    users = [p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py")
             if part_of(p) != "cli" and any(t == "argparse" for t in _top_level_imports(p))]
    assert not users, users


def test_the_networks_know_nothing_of_runs_trained_together():
    source = (PACKAGE / "models" / "resnet.py").read_text()
    assert "runs" not in source and "groups" not in source


def test_the_checker_sees_a_broken_direction(tmp_path, monkeypatch):
    bad = tmp_path / "resnetlab" / "models" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from resnetlab.engine.trainer import train\n")
    assert imports(bad) == [("engine", 2)] and "engine" not in ALLOWED["models"]


def _top_level_imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module.split(".")[0])
    return out


def test_help_answers_without_importing_torch():
    """`resnetlab --help` (and bad subcommands) must be instant: torch takes seconds to import."""
    import subprocess
    import sys

    code = ("import sys; from resnetlab.cli.main import main; main(['--help']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert out.stdout.strip().endswith("NO-TORCH"), out.stdout + out.stderr
