"""Every singledir module imports on its own, every name a workflow script imports exists,
and light jobs load no torch. (Layering and cycles: tests/pipeline/test_layering.py.)

Each module is imported first, in a process where no singledir module is loaded yet (a
fork of one interpreter that has imported only the third-party libraries, so the test is
fast): a module that works only after another one happened to be imported fails here.
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


SCRIPT_IMPORTS = r"""
import ast, importlib, pathlib, sys
missing = []
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("singledir"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{path.name}:{node.lineno}: {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("singledir"):
                    importlib.import_module(alias.name)
print("MISSING:", " ".join(missing))
"""


def test_every_name_a_workflow_script_imports_exists():
    """A script's imports run only when Snakemake runs its job: a name moved in the library
    would otherwise first fail inside a workflow run, before the job's log is open."""
    scripts = REPO / "workflow" / "scripts"
    assert len(list(scripts.glob("*.py"))) > 20
    proc = subprocess.run([sys.executable, "-c", SCRIPT_IMPORTS, str(scripts)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "MISSING:", proc.stdout


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
