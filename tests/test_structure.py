"""The repository's structure, read from the source (nothing here imports ofa_tf).

Import graph (`test_no_import_cycle`, `test_every_project_import_resolves`)
    Nodes are the modules under ofa_tf/ (`ofa_tf/x/__init__.py` is the node `ofa_tf.x`).
    Every import statement of a module is an edge, wherever it stands: at module level,
    inside a function or class body, under `try:`, `if` or `if TYPE_CHECKING:` (a module
    that needs another one only for its type annotations still depends on it). Relative
    imports are resolved against the importing module's package. An import names its
    target like this:

    - `import ofa_tf.a.b` -> `ofa_tf.a.b`;
    - `from ofa_tf.a import b` -> `ofa_tf.a.b` when that submodule exists (file or package);
    - otherwise `b` is a name of the module `ofa_tf.a`. When `ofa_tf.a` is a package whose
      `__init__.py` re-exports `b` (`from ofa_tf.a.sub import b` or `from .sub import b`,
      at its module level, or `b` listed under "ofa_tf.a.sub" in the table of a lazy
      package's `lazy_exports(__name__, {...})`, see ofa_tf/lazy.py), the edge goes to the
      submodule that defines `b`, following re-exports through nested packages; otherwise
      it goes to `ofa_tf.a` itself.

    Importing `ofa_tf.a.b` also runs the parents' `__init__.py` files; those implicit
    imports are not edges. With re-exports resolved to their definitions, a package's
    own modules may import each other through the package (`from ofa_tf.training import
    X` inside ofa_tf/training/foo.py) without forming a cycle through `__init__.py`, while
    a cycle between real modules (for example `ofa_tf.a.x -> ofa_tf.b.y -> ofa_tf.a.x`)
    is reported with its modules in order and the file:line of each import in it.

    `test_every_project_import_resolves` also reads tools/ and benchmarks/ (PROJECT_CODE):
    an import of a project module that does not exist fails there.

Function-level imports (`test_no_function_level_import_of_a_project_module`)
    Project code (PROJECT_CODE: ofa_tf/ and, while they exist, tools/ and benchmarks/)
    imports project modules at module level only (a function or class body
    does not import them; `if TYPE_CHECKING:` is allowed), so that every dependency is
    visible at the top of the file and none is hidden to dodge a cycle. The exceptions
    are optional heavy dependencies, listed in FUNCTION_LEVEL_ALLOWED with their reasons,
    and the command-line programs (FUNCTION_LEVEL_PACKAGES). Third-party imports are not
    checked here; tests/ is not project code.

References (`test_no_reference_to_files_outside_the_repository`)
    No text file of the repository (tracked, or new and not ignored by .gitignore; this
    file excepted, as it spells the patterns) names a file that a clone does not have or
    the history of its making: see FORBIDDEN. `../shared` may appear only under tests/ and
    .ci/ (a user's clone has no `../shared`).
"""

from __future__ import annotations

import ast
import functools
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "ofa_tf"
PROJECT_CODE = (PACKAGE, "tools", "benchmarks")  # top-level directories of project Python code

# (importing module, imported module) -> why the import must wait until a function runs.
# Only for optional heavy dependencies: a project module that imports a large or optional
# third-party package at its top, needed by one rarely used function of the importer.
FUNCTION_LEVEL_ALLOWED: dict[tuple[str, str], str] = {}
# package -> why its modules may import project modules inside functions
FUNCTION_LEVEL_PACKAGES: dict[str, str] = {
    "ofa_tf.cli": "a program defines and parses its flags (and answers --help) before TensorFlow loads: it imports "
                  "the library in the functions that run after parsing (ofa_tf/cli/__init__.py)",
}

# pattern -> what it refers to; `../shared` is handled apart (allowed under SHARED_ALLOWED)
FORBIDDEN = {
    r"REFERENCE\.md": "not in the repository",
    r"STACK\.md": "not in the repository",
    r"\bpapers/": "outside the repository: cite a paper by title and arXiv id",
    r"(?i)\bsessions? \d": "the sessions that wrote the code",
    r"(?i)\b(?:this|previous|earlier|later|next) session\b": "the sessions that wrote the code",
}
SHARED = r"\.\./shared"
SHARED_ALLOWED = ("tests/", ".ci/")


# ---------------------------------------------------------------------------- the import graph
@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module, resolved as the docstring says
    path: str  # importing file, relative to the repository root
    line: int
    function_level: bool  # inside a def / class body
    type_checking: bool  # under `if TYPE_CHECKING:` (never runs)
    written: str  # the module as the statement spells it (absolute)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _modules(tops=(PACKAGE,)) -> dict[str, str]:
    """{module name: path relative to the repository root} for every .py file under the
    top-level directories `tops` (those that exist)."""
    modules = {}
    for directory, dirs, files in (step for top in tops for step in os.walk(os.path.join(ROOT, top))):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.relpath(os.path.join(directory, name), ROOT)
            parts = path[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_package(module: str, modules: dict[str, str]) -> bool:
    return modules[module].endswith("__init__.py")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_statements(tree: ast.Module):
    """(node, function_level, type_checking) for every import statement of a module."""
    def visit(nodes, function_level, type_checking):
        for child in nodes:
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, function_level, type_checking
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from visit(child.body, function_level, True)
                yield from visit(child.orelse, function_level, type_checking)
            else:
                inner = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
                yield from visit(ast.iter_child_nodes(child), function_level or inner, type_checking)
    yield from visit(tree.body, False, False)


def _absolute(node: ast.ImportFrom, module: str, modules: dict[str, str]) -> str:
    """The absolute module name of `from X import ...`, resolving relative imports."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if _is_package(module, modules) else module.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _parse(path: str) -> ast.Module:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return ast.parse(f.read(), filename=path)


def _lazy_table(node: ast.stmt) -> dict[str, list[str]]:
    """{module: names} of a top-level `... = lazy_exports(__name__, {"module": ("name", ...)})`."""
    call = getattr(node, "value", None)
    if not (isinstance(node, ast.Assign) and isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == "lazy_exports" and len(call.args) == 2 and isinstance(call.args[1], ast.Dict)):
        return {}
    return {key.value: [element.value for element in value.elts]
            for key, value in zip(call.args[1].keys, call.args[1].values)}


def _re_exports(modules: dict[str, str], trees: dict[str, ast.Module]) -> dict[tuple[str, str], str]:
    """{(package, exported name): module it comes from} from each package's top-level
    `from ofa_tf.pkg.sub import name [as alias]` lines (the submodule `sub` of that package),
    and from a lazy package's `lazy_exports` table."""
    exports = {}
    for module, tree in trees.items():
        if not _is_package(module, modules):
            continue
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                source = _absolute(node, module, modules)
                if source.startswith(module + ".") and source in modules:
                    for alias in node.names:
                        exports[module, alias.asname or alias.name] = source
            for source, names in _lazy_table(node).items():
                if source.startswith(module + ".") and source in modules:
                    for name in names:
                        exports[module, name] = source
    return exports


def _resolve_name(package: str, name: str, modules, exports) -> str:
    """The module behind `from package import name` when `name` is not a submodule."""
    seen = set()
    while (package, name) in exports and (package, name) not in seen:
        seen.add((package, name))
        source = exports[package, name]
        if source in modules and _is_package(source, modules):
            package = source  # re-exported again by a nested package: follow it
            continue
        return source
    return package


@functools.lru_cache(maxsize=None)
def project_imports() -> tuple[list[Import], list[str]]:
    """Every import of a project module by a module of PROJECT_CODE, and the imports that
    name no existing module (as 'file:line: text'; their `target` is the name as written)."""
    modules = _modules(PROJECT_CODE)
    trees = {module: _parse(path) for module, path in modules.items()}
    exports = _re_exports(modules, trees)
    found, unresolved, seen = [], [], set()

    def in_package(name):
        return name.split(".")[0] in PROJECT_CODE

    for module, tree in trees.items():
        path = modules[module]
        for node, function_level, type_checking in _import_statements(tree):
            targets = []  # (written, resolved or None)
            if isinstance(node, ast.Import):
                targets = [(alias.name, alias.name if alias.name in modules else None)
                           for alias in node.names if in_package(alias.name)]
            else:
                base = _absolute(node, module, modules)
                if not in_package(base):
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in modules:
                        targets.append((submodule, submodule))
                    elif base in modules:
                        targets.append((base, _resolve_name(base, alias.name, modules, exports)
                                        if _is_package(base, modules) else base))
                    else:
                        targets.append((base, None))
            for written, target in targets:
                if target is None:  # kept (as written) for the function-level check, not an edge of the graph
                    unresolved.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
                    target = written
                if target != module and (module, target, node.lineno) not in seen:  # once per statement
                    seen.add((module, target, node.lineno))
                    found.append(Import(module, target, path, node.lineno, function_level, type_checking, written))
    return found, unresolved


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The elementary cycles worth naming: for each strongly connected component, the
    shortest cycle through each of its modules (deduplicated), each starting at its least
    module name."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def connect(v):  # Tarjan's algorithm (recursive: the graph is a few hundred modules at most)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            components.append(component)

    for v in sorted(edges):
        if v not in index:
            connect(v)
    cycles = set()
    for component in components:
        if len(component) < 2:
            continue
        for start in sorted(component):  # breadth-first: the shortest way back to `start`
            parents, frontier, back = {start: None}, [start], None
            while frontier and back is None:
                following = []
                for v in frontier:
                    for w in sorted(edges.get(v, set()) & component):
                        if w == start:
                            back = v
                            break
                        if w not in parents:
                            parents[w] = v
                            following.append(w)
                    if back is not None:
                        break
                frontier = following
            if back is None:
                continue
            path, v = [], back
            while v is not None:
                path.append(v)
                v = parents[v]
            path.reverse()
            first = path.index(min(path))
            cycles.add(tuple(path[first:] + path[:first]))
    return sorted(map(list, cycles), key=lambda c: (len(c), c))


def test_every_project_import_resolves():
    """An import of an ofa_tf module that does not exist fails at run time (and would leave
    an edge out of the graph below)."""
    _, unresolved = project_imports()
    if unresolved:
        pytest.fail("imports of project modules that do not exist:\n" + "\n".join(unresolved), pytrace=False)


def test_no_import_cycle():
    imports, _ = project_imports()
    modules = _modules()  # ofa_tf's
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for imp in (imp for imp in imports if imp.source in modules and imp.target in modules):
        edges.setdefault(imp.source, set()).add(imp.target)
        where.setdefault((imp.source, imp.target), imp.where)
    cycles = _cycles(edges)

    def describe(cycle):
        steps = [f"{a} ({where[a, b]})" for a, b in zip(cycle, cycle[1:] + cycle[:1])]
        return " -> ".join(steps + [cycle[0]])

    if cycles:
        pytest.fail(f"{len(cycles)} import cycle(s) among ofa_tf modules:\n" + "\n".join(map(describe, cycles)),
                    pytrace=False)


def test_no_function_level_import_of_a_project_module():
    imports, _ = project_imports()
    hidden = [imp for imp in imports if imp.function_level and not imp.type_checking]
    exempt = tuple(package + "." for package in FUNCTION_LEVEL_PACKAGES)
    offending = [imp for imp in hidden if (imp.source, imp.target) not in FUNCTION_LEVEL_ALLOWED
                 and not imp.source.startswith(exempt)]
    lines = [f"{imp.where}: {imp.source} imports {imp.target}" + (f" (as {imp.written})" if imp.written != imp.target
                                                                  else "") for imp in offending]
    if offending:
        pytest.fail(f"{len(offending)} function-level import(s) of project modules (move them to the top of the "
                    "file):\n" + "\n".join(lines), pytrace=False)
    used = {(imp.source, imp.target) for imp in hidden}
    stale = sorted(set(FUNCTION_LEVEL_ALLOWED) - used)
    assert not stale, f"FUNCTION_LEVEL_ALLOWED lists imports that no longer exist: {stale}"


# package -> project packages it must not import: the lower floors stay below the upper ones
NOT_ABOVE = {
    "ofa_tf.spaces": ("ofa_tf.layers", "ofa_tf.models", "ofa_tf.data", "ofa_tf.training", "ofa_tf.evaluation",
                      "ofa_tf.search", "ofa_tf.runs", "ofa_tf.export", "ofa_tf.latency", "ofa_tf.cli"),
    "ofa_tf.data": ("ofa_tf.training", "ofa_tf.evaluation", "ofa_tf.search", "ofa_tf.runs", "ofa_tf.export",
                    "ofa_tf.latency", "ofa_tf.cli"),
    "ofa_tf.evaluation": ("ofa_tf.training", "ofa_tf.search", "ofa_tf.runs", "ofa_tf.export", "ofa_tf.cli"),
    "ofa_tf.training": ("ofa_tf.evaluation", "ofa_tf.search", "ofa_tf.runs", "ofa_tf.export", "ofa_tf.cli"),
}
# third-party packages whose import costs seconds (TensorFlow and what loads it)
HEAVY = ("tensorflow", "keras", "tf_keras", "tensorflow_datasets", "tensorflow_model_optimization", "torch")
# modules that must import without them: the public face and the light modules the programs
# read before parsing their flags (--help), the space and arch values, the search with a
# saved predictor; every command-line module (its heavy imports wait inside functions)
LIGHT = ("ofa_tf", "ofa_tf.errors", "ofa_tf.values", "ofa_tf.choices", "ofa_tf.lazy", "ofa_tf.io",
         "ofa_tf.spaces", "ofa_tf.spaces.*", "ofa_tf.search", "ofa_tf.search.costs", "ofa_tf.search.encoding",
         "ofa_tf.search.predictor", "ofa_tf.search.searchers", "ofa_tf.search.pareto", "ofa_tf.runs",
         "ofa_tf.runs.config", "ofa_tf.export", "ofa_tf.export.options", "ofa_tf.cli.*")


def test_lower_floors_do_not_import_upper_ones():
    imports, _ = project_imports()
    wrong = [f"{imp.where}: {imp.source} imports {imp.target}" for imp in imports
             for package, above in NOT_ABOVE.items()
             if (imp.source == package or imp.source.startswith(package + "."))
             and any(imp.target == a or imp.target.startswith(a + ".") for a in above)]
    assert not wrong, "\n".join(wrong)


def _heavy_at_import(module: str, modules: dict[str, str]) -> list[str]:
    """The chains by which importing `module` imports a HEAVY package: its module-level
    imports (and its parent packages' `__init__`), followed through project modules."""
    imports, _ = project_imports()
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.function_level and not imp.type_checking:
            edges.setdefault(imp.source, set()).add(imp.target)

    def own_heavy(name: str) -> list[str]:
        found = []
        for node, function_level, type_checking in _import_statements(_parse(modules[name])):
            if function_level or type_checking:
                continue
            written = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if node.level == 0 else [])
            found += [w for w in written if w.split(".")[0] in HEAVY]
        return found

    chains, seen, todo = [], set(), [(module, [module])]
    while todo:
        name, path = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        chains += [" -> ".join(path + [heavy]) for heavy in own_heavy(name)]
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo += [(target, path + [target]) for target in sorted(edges.get(name, set()) | set(parents))]
    return chains


def test_the_public_face_and_the_light_modules_import_no_tensorflow():
    """`import ofa_tf` (its names load on first use), the settings and choices the programs
    read before parsing flags, spaces, archs and searching with a saved predictor load
    no TensorFlow; nor does any command-line module before its flags are parsed."""
    modules = _modules()
    light = sorted({m for pattern in LIGHT for m in modules
                    if m == pattern or (pattern.endswith(".*") and m.startswith(pattern[:-1]))})
    assert "ofa_tf.cli.train" in light and "ofa_tf.spaces.arch" in light
    heavy = [chain for module in light for chain in _heavy_at_import(module, modules)]
    assert not heavy, "\n".join(heavy)
    # a test of the test: a module that does import TensorFlow is caught
    assert any(chain.endswith("tensorflow") for chain in _heavy_at_import("ofa_tf.runs.train", modules))


def test_import_ofa_tf_loads_no_tensorflow():
    """The same, by importing: `import ofa_tf` and a name of the public face that needs none."""
    code = ("import sys, ofa_tf; ofa_tf.get_space('ofa_mbv3').max_arch(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % (HEAVY,))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout


def test_cycle_finder_and_resolution_on_known_cases():
    """The helpers above on a hand-made graph (a test of the test)."""
    edges = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"d", "e"}, "e": set()}
    assert _cycles(edges) == [["a", "b"], ["a", "b", "c"]]
    modules = {"p": "p/__init__.py", "p.q": "p/q/__init__.py", "p.q.r": "p/q/r.py", "p.s": "p/s.py"}
    exports = {("p", "Name"): "p.q", ("p.q", "Name"): "p.q.r", ("p", "Other"): "p.s"}
    assert _resolve_name("p", "Name", modules, exports) == "p.q.r"
    assert _resolve_name("p", "Other", modules, exports) == "p.s"
    assert _resolve_name("p", "Defined_in_init", modules, exports) == "p"
    tree = ast.parse("import x\nif TYPE_CHECKING:\n    import y\nelse:\n    import z\n"
                     "def f():\n    import w\nclass C:\n    import v\n")
    assert [(n.names[0].name, f, t) for n, f, t in _import_statements(tree)] == [
        ("x", False, False), ("y", False, True), ("z", False, False), ("w", True, False), ("v", True, False)]


# ---------------------------------------------------------------------------- references
def _repository_text_files() -> list[str]:
    """Tracked files and new ones not ignored, relative to the root; every file when git is
    not available. Binary files (a NUL byte, or not UTF-8) are skipped by the caller."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        listed = []
        for directory, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if not d.startswith(".") or d == ".ci"]
            dirs[:] = [d for d in dirs if d not in ("__pycache__", "build", "dist") and not d.endswith(".egg-info")]
            listed += [os.path.relpath(os.path.join(directory, f), ROOT) for f in files]
    this = os.path.relpath(os.path.abspath(__file__), ROOT)
    return sorted({p for p in listed if p and p != this and os.path.isfile(os.path.join(ROOT, p))})


def _text(path: str) -> str | None:
    with open(os.path.join(ROOT, path), "rb") as f:
        data = f.read()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_no_reference_to_files_outside_the_repository():
    patterns = {re.compile(p): why for p, why in FORBIDDEN.items()}
    shared = re.compile(SHARED)
    found = []
    for path in _repository_text_files():
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for pattern, why in patterns.items():
                for match in pattern.finditer(line):
                    found.append(f"{path}:{number}: {match.group(0)!r} ({why})")
            if not path.startswith(SHARED_ALLOWED) and shared.search(line):
                found.append(f"{path}:{number}: '../shared' (only tests/ and .ci/ may use it)")
    if found:
        pytest.fail(f"{len(found)} reference(s) to files outside the repository or to sessions:\n" + "\n".join(found),
                    pytrace=False)
