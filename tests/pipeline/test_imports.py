"""Every singledir module imports on its own, and the package has no import cycle.

(a) Each module is imported first, in a process where no singledir module is loaded yet
(a fork of one interpreter that has imported only the third-party libraries, so the test
is fast): a module that works only after another one happened to be imported fails here.
(b) The import graph of singledir modules, built from the source (imports inside
functions count too: a function-local import that dodges a cycle still is one), has no
cycle. Code under ``if __name__ == "__main__":`` is left out: it runs only when the file
is the program, and then the module is ``__main__``, not its package name.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"


def module_files() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "singledir").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_main_block(node: ast.AST) -> bool:
    t = node.test if isinstance(node, ast.If) else None
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in t.comparators))


def _imported_names(tree: ast.AST, package: str):
    """(dotted name, line) of every import in ``tree``, outside ``__main__`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_main_block(node):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            yield base, node.lineno
            for alias in node.names:  # ``from pkg import module``
                yield f"{base}.{alias.name}", node.lineno
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, dict[str, int]]:
    """{module: {imported singledir module: line}}; importing a.b.c also imports a.b."""
    files = module_files()
    graph: dict[str, dict[str, int]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: dict[str, int] = {}
        for name, line in _imported_names(ast.parse(path.read_text(), str(path)), package):
            if not name.startswith("singledir"):
                continue
            while name and name not in files:  # ``from module import function``
                name = name.rpartition(".")[0]
            while name:  # the module and the packages above it
                if name != mod and not mod.startswith(name + "."):
                    edges.setdefault(name, line)
                name = name.rpartition(".")[0]
        graph[mod] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_sees_function_local_imports_and_finds_a_cycle():
    g = {"a": {"b": 3}, "b": {"c": 7}, "c": {"a": 9}, "d": {"a": 1}}
    assert find_cycle(g) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None
    tree = ast.parse("def f():\n    from singledir.io import atomic_path\nif __name__ == '__main__':\n"
                     "    import singledir.bench\n")
    assert list(_imported_names(tree, "singledir.x")) == [("singledir.io", 2), ("singledir.io.atomic_path", 2)]
    graph = import_graph()
    assert "singledir.engine.batch" in graph["singledir.engine.perturb"]
    assert "singledir.engine" in graph["singledir.bench.engine_vs_naive"]  # the package above, too


def test_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(
        f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


IMPORT_EACH = r"""
import os, sys, traceback
import numpy, pandas, scipy.stats, torch, yaml  # third-party only: no singledir module is loaded
failed = []
for mod in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(mod)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(mod)
print("FAILED:", " ".join(failed))
"""


def test_every_module_imports_first_in_a_fresh_process():
    mods = sorted(module_files())
    assert len(mods) > 30 and "singledir.engine.options" in mods
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", IMPORT_EACH, *mods], capture_output=True, text=True, env=env,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "FAILED:", proc.stdout + proc.stderr[-3000:]


# Jobs that only read tables and draw, or shuffle labels, run by the dozen: importing torch
# would cost each ~1 s of a 2-core demo. Their scripts' singledir imports must not load it.
LIGHT_SCRIPTS = sorted([*(REPO / "workflow" / "scripts").glob("fig*.py"),
                        *(REPO / "workflow" / "scripts" / s for s in ("unit_importance_scatter.py",
                                                                     "corrupt_labels.py", "stats_table.py",
                                                                     "claims.py"))])


def _singledir_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return sorted({n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and (n.module or "").startswith("singledir")}
                  | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
                     if a.name.startswith("singledir")})


def test_light_scripts_do_not_import_torch():
    assert len(LIGHT_SCRIPTS) >= 17
    modules = sorted({m for p in LIGHT_SCRIPTS for m in _singledir_imports(p)})
    assert "singledir.data.access" in modules
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ,
                         "PYTHONPATH": str(SRC)}, check=True)
    assert out.stdout.strip() == "False", f"one of {modules} imports torch"


def test_an_mlp_analysis_job_loads_neither_inductor_nor_torchvision():
    """The opening of a per-model analysis job on an MLP (setup_torch, the engine, the
    unit-layer check) turns on ATen's deterministic algorithms (warn-only), as
    torch.use_deterministic_algorithms(True, warn_only=True) does, without importing
    torch._inductor or torchvision: each pulls in torch._dynamo, 1.3-1.7 s per job on the
    2-core machines (singledir never compiles; only ResNet jobs need torchvision)."""
    code = ("import sys, torch\n"
            "from singledir.pipeline.runtime import setup_torch\n"
            "from singledir.pipeline.jobs import open_model_job\n"
            "from singledir.engine.ablation import cumulative_ablation_curve\n"
            "from singledir.models.api import unit_layers\n"
            "from singledir.models.nets import MLP\n"
            "assert not torch.are_deterministic_algorithms_enabled()\n"
            "setup_torch(1)\n"
            "model = MLP(64, [8, 8], 10).eval()\n"
            "x = torch.randn(20, 64); y = torch.randint(0, 10, (20,))\n"
            "cumulative_ablation_curve(model, x, y, unit_layers(model, 'all', x), n_orderings=2, n_points=3)\n"
            "print(torch.are_deterministic_algorithms_enabled(),\n"
            "      torch.is_deterministic_algorithms_warn_only_enabled(),\n"
            "      [m for m in ('torch._inductor', 'torch._dynamo', 'torchvision') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "[]"]
