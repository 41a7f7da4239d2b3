"""The import directions of docs/architecture.md, read from the source (every import, lazy ones included)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "resnetlab"

# What each part may import from resnetlab (besides itself, errors.py and files.py, which everything may use).
ALLOWED = {
    "data": set(),
    "models": {"data"},
    "runtime": {"models"},
    "multiseed": {"models"},
    "inference": {"data", "models", "runtime"},
    "training": {"data", "models", "runtime", "multiseed", "inference"},
    "experiments": {"data", "models", "runtime", "inference", "training"},
    "bench": {"data", "models", "runtime", "training"},
    "api": {"data", "models", "runtime", "inference", "training", "experiments"},
    "__init__": {"api", "models"},
    "cli": {"data", "models", "runtime", "inference", "training", "experiments", "bench", "resnetlab"},
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
    bad.write_text("def f():\n    from resnetlab.training.loop import train\n")
    assert imports(bad) == [("training", 2)] and "training" not in ALLOWED["models"]


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


# Imports inside functions, each with its reason; any other import goes at the top of its module.
LATE_IMPORTS = {
    ("inference/export.py", "onnx"): "optional (the export extra); only ONNX exports need it",
    ("inference/export.py", "onnxruntime"): "optional, as onnx",
    ("models/hub.py", "huggingface_hub"): "optional (the hub extra); only hf-hub: names need it",
    ("models/hub.py", "huggingface_hub.constants"): "its cache folder, for the error, once the package imported",
    ("runtime/figures.py", "matplotlib"): "~0.4 s to import; only commands that draw need it",
    ("runtime/figures.py", "matplotlib.pyplot"): "after matplotlib.use('Agg')",
    ("training/run.py", "torch.utils.tensorboard"): "optional (the tensorboard extra) and slow to import",
}


def _late_imports(path: Path) -> list[tuple[str, int]]:
    out = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    out += [(a.name, node.lineno) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    out.append((node.module or "", node.lineno))
    return out


def test_imports_are_at_the_top_of_their_modules():
    late = [f"{p.relative_to(PACKAGE)}:{line} imports {name} inside a function"
            for p in sorted(PACKAGE.rglob("*.py")) for name, line in _late_imports(p)
            if (str(p.relative_to(PACKAGE)), name) not in LATE_IMPORTS]
    assert not late, "\n".join(late)


def module_graph() -> dict[str, set[str]]:
    """Module -> the resnetlab modules it imports (`from pkg import sub` counts as the submodule sub)."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("resnetlab"):
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
                edges.update(subs if len(subs) == len(node.names) else [node.module, *subs])
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
        edges.discard(name)
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, or None (depth-first search; a package's __init__ importing its own modules is an
    edge like any other, so a module importing names through its own package closes a circle)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_circles():
    circle = find_circle(module_graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_circle_finder_finds_one():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_the_step_is_three_files_from_the_cli():
    """cli/train.py -> training/loop.py -> training/step.py, where forward, loss, backward and update are one
    function; the one-run and K-run trainees share the declared interface."""
    step = (PACKAGE / "training" / "step.py").read_text()
    body = step[step.index("    def sgd_step("):]
    body = body[:body.index("\n    def ", 10)]
    for part in ("self.net(x)", "batch_loss(", ".backward()", "self.scaler.step(self.optimizer)"):
        assert part in body, part
    assert "class Trainee(Protocol)" in step and "F.cross_entropy(" in step[step.index("def batch_loss("):]
    assert "resnetlab.training.loop" in (PACKAGE / "cli" / "train.py").read_text() or \
        "from resnetlab.training import" in (PACKAGE / "cli" / "train.py").read_text()
    assert "TrainingStep" in (PACKAGE / "training" / "loop.py").read_text()


def test_one_run_and_k_runs_are_both_trainees():
    import inspect

    from resnetlab.multiseed import Together
    from resnetlab.training.step import OneRun, Trainee

    for member in ("momenta", "set_learning_rates", "sync"):
        declared = inspect.signature(getattr(Trainee, member)).parameters
        for cls in (OneRun, Together):
            assert list(inspect.signature(getattr(cls, member)).parameters) == list(declared), (cls, member)
