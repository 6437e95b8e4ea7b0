"""The library's imports point one way (issue 28), checked on an import graph read from the
source with ``ast``.

Layers, lowest first (a module may import its own layer or a lower one, never a higher one):

=====  ============================================  ==============================================
layer  packages and modules                          what
=====  ============================================  ==============================================
  0    ``singledir``, ``singledir.io``               base helpers
  1    ``singledir.data``, ``singledir.models``      datasets; the networks and their unit layers
  2    ``singledir.training``, ``singledir.engine``  training loops; the perturbation engine
  3    ``singledir.analysis``                        per-model measures
  4    ``singledir.stats``                           statistics over networks, the claims
  5    ``singledir.figures``                         figure registry, plotting, report pages
  6    ``singledir.pipeline``                        what a config asks for, how a job runs
  7    ``singledir.bench``                           the benchmark, a tool on top of everything
=====  ============================================  ==============================================

Three properties are checked:

1. no import goes to a higher layer (module-level or inside a function: a function-local
   import runs whenever its function does, so it is as much a dependency as any other);
2. no import cycle among modules;
3. every function-local singledir import carries a comment saying why it is local (for
   example what it keeps out of a light process), since the reader of the module's header
   otherwise misses a dependency: on the import's own line, in the comment lines right
   above it, or above the block of adjacent import lines it belongs to.

The checks are plain functions over a source tree, so ``test_the_checker_*`` runs them on a
small synthetic package that breaks each rule and asserts that each break is reported.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"

LAYERS = {
    "singledir": 0, "singledir.io": 0,
    "singledir.data": 1, "singledir.models": 1,
    "singledir.training": 2, "singledir.engine": 2,
    "singledir.analysis": 3,
    "singledir.stats": 4,
    "singledir.figures": 5,
    "singledir.pipeline": 6,
    "singledir.bench": 7,
}

# Known exceptions, kept empty: an entry must name a live offender
# (test_the_temporary_allowlists_name_only_live_offenders), so a fixed one cannot linger.
KNOWN_UPWARD: set = set()  # (importer, target) pairs allowed to import a higher layer
LOCAL_IMPORTS_WITHOUT_REASON_ELSEWHERE: dict = {}  # file -> modules imported locally without a why-comment

# A comment that only silences a linter explains nothing; and after the cycles are gone,
# "avoids a cycle" is no reason either (test_no_import_cycle proves there is none to avoid).
_LINT_MARKER = re.compile(r"noqa(:\s*[A-Z]+\d+(,\s*[A-Z]+\d+)*)?|type:\s*ignore(\[[^\]]*\])?|pragma:[^#]*")
_NOT_A_REASON = re.compile(r"\bcycles?\b|\bcircular\b|\bcircle\b", re.I)


@dataclass(frozen=True)
class Import:
    importer: str     # the module whose source holds the import
    target: str       # the singledir module it loads
    path: Path        # the importer's file
    line: int
    local: bool       # inside a function (runs when the function is called)
    comment: str      # the comment that explains it ('' if none; see _comment_of)

    def where(self, root: Path) -> str:
        return f"{_relative(self.path, root)}:{self.line}"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def module_files(src: Path, package: str = "singledir") -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``src``."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _comments(text: str) -> dict[int, str]:
    """Line -> the text of the comment on it (without ``#``)."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out


def _comment_of(node: ast.stmt, comments: dict[int, str], lines: list[str], group_comment: str) -> str:
    """The comment on one of the statement's lines, else the comment lines right above it,
    else ``group_comment``: that of the import right before it, when the two are adjacent
    lines (one comment above a block of imports explains the block)."""
    own = " ".join(comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in comments)
    above = node.lineno - 1
    block = []
    while not own and above in comments and lines[above - 1].lstrip().startswith("#"):
        block.insert(0, comments[above])
        above -= 1
    return own or " ".join(block) or group_comment


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module a dotted import name loads: ``singledir.x.function`` -> ``singledir.x``."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def collect_imports(src: Path, package: str = "singledir") -> list[Import]:
    """Every import of a ``package`` module by a ``package`` module (``import p.x``,
    ``from p.x import y``, ``from p import x``, relative imports), with file, line, whether
    it sits in a function, and its comment. Code under ``if __name__ == "__main__":`` and
    ``if TYPE_CHECKING:`` counts as module level: it is source of the module all the same."""
    modules = module_files(src, package)
    found: list[Import] = []
    for mod, path in modules.items():
        text = path.read_text()
        comments, lines = _comments(text), text.splitlines()
        own_package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        seen: set[tuple[str, int]] = set()

        def visit(node: ast.AST, local: bool) -> None:
            previous: tuple[int, str] = (0, "")  # (last line, comment) of the import statement just visited
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    comment = _comment_of(child, comments, lines,
                                          previous[1] if previous[0] == child.lineno - 1 else "")
                    previous = (child.end_lineno or child.lineno, comment)
                    names = []
                    if isinstance(child, ast.Import):
                        names = [alias.name for alias in child.names]
                    else:
                        base = child.module or ""
                        if child.level:
                            up = own_package.split(".")[:len(own_package.split(".")) - child.level + 1]
                            base = ".".join(up + ([child.module] if child.module else []))
                        names = [f"{base}.{alias.name}" for alias in child.names]  # a module, or a name in base
                    for name in names:
                        if name != package and not name.startswith(package + "."):
                            continue
                        target = _resolve(name, modules)
                        if target and target != mod and (target, child.lineno) not in seen:  # one per module named
                            seen.add((target, child.lineno))
                            found.append(Import(mod, target, path, child.lineno, local, comment))
                visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        visit(ast.parse(text, str(path)), False)
    return found


def layer_of(module: str, layers: dict[str, int] = LAYERS) -> int | None:
    """The layer of ``module``: that of the longest entry of ``layers`` that is the module or
    a package above it (the top package's entry covers only the package itself, so a new
    top-level module must be given a layer)."""
    top = min(layers, key=len)
    for name in sorted(layers, key=len, reverse=True):
        if module == name or (name != top and module.startswith(name + ".")):
            return layers[name]
    return None


def unlayered_modules(modules, layers=LAYERS) -> list[str]:
    return sorted(m for m in modules if layer_of(m, layers) is None)


def upward_imports(imports: list[Import], root: Path, layers=LAYERS, allowed=frozenset()) -> list[str]:
    """'file:line: importer (layer i) imports target (layer j)' for every import to a
    higher layer, except the (importer, target) pairs in ``allowed``."""
    out = []
    for imp in imports:
        low, high = layer_of(imp.importer, layers), layer_of(imp.target, layers)
        if low is not None and high is not None and high > low and (imp.importer, imp.target) not in allowed:
            out.append(f"{imp.where(root)}: {imp.importer} (layer {low}) imports {imp.target} (layer {high})"
                       + (" inside a function" if imp.local else ""))
    return out


def import_graph(imports: list[Import]) -> dict[str, dict[str, Import]]:
    """{importer: {target: the first import of it}}. Loading ``a.b.c`` first runs the
    packages ``a`` and ``a.b``; their ``__init__`` files are nodes of their own, imported by
    nobody here unless named, which is enough since every package ``__init__`` is checked too."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in imports:
        graph.setdefault(imp.importer, {}).setdefault(imp.target, imp)
        graph.setdefault(imp.target, {})
    return graph


def find_cycle(graph: dict[str, dict]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, sorted for a stable answer)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
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


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, Import]], root: Path) -> str:
    return "import cycle: " + " -> ".join(
        f"{a} ({graph[a][b].where(root)})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def has_reason(comment: str) -> bool:
    """A why-comment: words left after removing linter markers, and not 'avoids a cycle'."""
    words = _LINT_MARKER.sub("", comment).strip(" ()#:-,;")
    return len(re.findall(r"[A-Za-z]{2,}", words)) >= 2 and not _NOT_A_REASON.search(words)


def local_imports_without_reason(imports: list[Import], root: Path, allowed: dict[str, set] = None) -> list[str]:
    """'file:line: importer imports target inside a function without a comment saying why'
    (one line per import statement), except the files and targets in ``allowed``."""
    allowed = allowed or {}
    out = {}
    for imp in imports:
        rel = _relative(imp.path, root)
        if imp.local and not has_reason(imp.comment) and imp.target not in allowed.get(rel, ()):
            out.setdefault((rel, imp.line), f"{imp.where(root)}: {imp.importer} imports {imp.target} inside a "
                                            f"function with no comment saying why it is local"
                                            + (f" (comment: {imp.comment!r})" if imp.comment else ""))
    return [out[k] for k in sorted(out)]


# ------------------------------------------------------------------------------- the library

@pytest.fixture(scope="module")
def library_imports() -> list[Import]:
    return collect_imports(SRC)  # parsed once for the tests below (about a second on a busy core)


def test_every_module_has_a_layer():
    missing = unlayered_modules(module_files(SRC))
    assert not missing, f"give these modules a layer in tests/pipeline/test_layering.py LAYERS: {missing}"


def test_no_import_goes_to_a_higher_layer(library_imports):
    found = upward_imports(library_imports, REPO, allowed=KNOWN_UPWARD)
    assert not found, "imports to a higher layer:\n" + "\n".join(found)


def test_no_import_cycle(library_imports):
    # Function-local imports are edges too: one runs whenever its function is called, and a
    # local import that only dodges a cycle at load time still ties the two modules together
    # (issue 28 accepts no "avoids a cycle" as a reason to import locally). Code under
    # ``if __name__ == "__main__":`` is an edge as well: run with ``python -m``, it loads its
    # imports, which load this file a second time under its package name if they import it.
    graph = import_graph(library_imports)
    cycle = find_cycle(graph)
    assert cycle is None, describe_cycle(cycle, graph, REPO)


def test_every_function_local_import_says_why(library_imports):
    found = local_imports_without_reason(library_imports, REPO, LOCAL_IMPORTS_WITHOUT_REASON_ELSEWHERE)
    assert not found, ("function-local singledir imports: move each to the top of its module, or say in a "
                       "comment on its line or right above why it is local:\n" + "\n".join(found))


def test_the_temporary_allowlists_name_only_live_offenders(library_imports):
    """Once a branch removes an allowlisted import, its entry must go too, or the list would
    hide the next offender."""
    imports = library_imports
    live_upward = {(i.importer, i.target) for i in imports
                   if (layer_of(i.target) or 0) > (layer_of(i.importer) or 0)}
    assert KNOWN_UPWARD <= live_upward, f"no longer imported upward, delete: {KNOWN_UPWARD - live_upward}"
    live_local = {(_relative(i.path, REPO), i.target) for i in imports if i.local and not has_reason(i.comment)}
    listed = {(f, t) for f, targets in LOCAL_IMPORTS_WITHOUT_REASON_ELSEWHERE.items() for t in targets}
    assert listed <= live_local, f"now explained or gone, delete: {sorted(listed - live_local)}"


# ------------------------------------------------------------------------------- the checker

BAD_PACKAGE = {
    "singledir/__init__.py": "",
    "singledir/io.py": "",
    "singledir/data/__init__.py": "",
    "singledir/data/loader.py": (
        "from singledir.io import save\n"                      # down: fine
        "def f():\n"
        "    from singledir.pipeline.run import go\n"          # up, local, no comment
        "    from ..models import net  # keeps torch out of label jobs\n"  # relative, same layer, explained
        "    # noqa: F401\n"
        "    import singledir.models.net\n"                    # a lint marker is no reason
    ),
    "singledir/data/grouped.py": (
        "def h():\n"
        "    # both load torch, which the label jobs never need\n"
        "    from singledir.models.net import build\n"          # explained by the comment above
        "    from singledir.models.head import g, h\n"          # the same block: explained too
        "\n"
        "    from singledir.io import save\n"                   # after a blank line: a block of its own
    ),
    "singledir/models/__init__.py": "",
    "singledir/models/net.py": "from singledir.models import head\n",
    "singledir/models/head.py": (
        "def g():\n"
        "    # avoids a cycle\n"
        "    from singledir.models.net import build\n"       # a cycle net <-> head, dodged locally
    ),
    "singledir/pipeline/__init__.py": "",
    "singledir/pipeline/run.py": "from singledir import data\n",
    "singledir/extra.py": "",                                 # a new top-level module without a layer
}


def _write(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_checker_reads_every_import_form(tmp_path):
    src = _write(tmp_path, BAD_PACKAGE)
    got = {(i.importer, i.target, i.line, i.local) for i in collect_imports(src)}
    assert got == {
        ("singledir.data.loader", "singledir.io", 1, False),
        ("singledir.data.loader", "singledir.pipeline.run", 3, True),
        ("singledir.data.loader", "singledir.models.net", 4, True),   # relative: ..models.net
        ("singledir.data.loader", "singledir.models.net", 6, True),   # import a.b.c
        ("singledir.models.net", "singledir.models.head", 1, False),  # from package import module
        ("singledir.models.head", "singledir.models.net", 3, True),   # from module import name
        ("singledir.pipeline.run", "singledir.data", 1, False),
        ("singledir.data.grouped", "singledir.models.net", 3, True),
        ("singledir.data.grouped", "singledir.models.head", 4, True),  # two names, one import
        ("singledir.data.grouped", "singledir.io", 6, True),
    }


def test_the_checker_reports_an_upward_import_with_file_and_line(tmp_path):
    src = _write(tmp_path, BAD_PACKAGE)
    imports = collect_imports(src)
    assert upward_imports(imports, src) == [
        "singledir/data/loader.py:3: singledir.data.loader (layer 1) imports singledir.pipeline.run (layer 6) "
        "inside a function"]
    assert upward_imports(imports, src, allowed={("singledir.data.loader", "singledir.pipeline.run")}) == []
    assert unlayered_modules(module_files(src)) == ["singledir.extra"]


def test_the_checker_finds_a_cycle_through_a_local_import(tmp_path):
    src = _write(tmp_path, BAD_PACKAGE)
    graph = import_graph(collect_imports(src))
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["singledir.models.head", "singledir.models.net"]
    text = describe_cycle(cycle, graph, src)
    assert text.startswith("import cycle: ") and "singledir.models.head (singledir/models/head.py:3) -> " in text
    assert "singledir.models.net (singledir/models/net.py:1) -> " in text
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1}}) is None


def test_the_checker_wants_a_reason_for_each_local_import(tmp_path):
    src = _write(tmp_path, BAD_PACKAGE)
    found = local_imports_without_reason(collect_imports(src), src)
    assert [line.split(":")[:2] for line in found] == [
        ["singledir/data/grouped.py", "6"], ["singledir/data/loader.py", "3"], ["singledir/data/loader.py", "6"],
        ["singledir/models/head.py", "3"]]
    assert found[1] == ("singledir/data/loader.py:3: singledir.data.loader imports singledir.pipeline.run inside a "
                        "function with no comment saying why it is local")
    assert "(comment: 'avoids a cycle')" in found[3]
    allowed = {"singledir/data/loader.py": {"singledir.pipeline.run", "singledir.models.net"}}
    assert len(local_imports_without_reason(collect_imports(src), src, allowed)) == 2
    assert has_reason("keeps torch out of the Snakefile parse")
    assert not has_reason("noqa: E402") and not has_reason("") and not has_reason("lazy")
