"""The package's layering: no import cycle, and each module imports only from the layers below it.

The scan reads the source (``ast``), so it sees every import a module can run:
at module level and inside functions alike. Imports under ``if TYPE_CHECKING:``
are left out: they never run, and annotations may point anywhere. The parent
packages that Python imports implicitly before a submodule are left out too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import aioqlog

PACKAGE = Path(aioqlog.__file__).parent

#: The layers, bottom first: a module imports only modules of the layers below
#: its own, and the modules of one layer are independent of each other. A
#: sub-package (``handlers``, ``integrations``) is one unit: its modules may
#: import each other (without a cycle). ``__init__`` is the package itself.
LAYERS: list[tuple[str, ...]] = [
    ("_context", "_diagnostics", "_stats"),  # leaves: import nothing from aioqlog
    # The event loop (asyncio or trio) behind one object; imports only _diagnostics.
    ("_backend", "_records"),  # _records: record copies and aioqlog's own records
    ("_lifecycle", "_async_handler", "_batch"),  # _batch: batched emission to sync handlers
    ("_bridge",),  # the engine: bridge, lanes, listener
    ("_lanes",),
    ("_listener",),
    ("_dictconfig",),  # adoption: dictConfig, the producer handler, install()
    ("_handler",),
    ("_install",),
    ("config", "handlers", "integrations"),  # the edges
    ("__init__",),
]

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path, package: str) -> str:
    """Return the dotted name of the module at *path* in *package* (rooted at *root*)."""
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Yield every import statement that can run: any depth, not under TYPE_CHECKING."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def import_graph(root: Path, package: str) -> Graph:
    """Return, for each module of *package*, the package's modules it imports."""
    paths = {module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}
    graph: Graph = {}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                if node.level == 0:
                    base = node.module or ""
                elif node.module:
                    base = f"{base}.{node.module}"
                # ``from . import _lifecycle`` imports a module; ``from ._x import Y`` a name.
                candidates = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                    for alias in node.names
                ]
            targets.update(c for c in candidates if c in paths and c != name)
        graph[name] = targets
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """Return one import cycle of *graph* as a path (first module repeated last), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
                on_path.add(child)
    return None


def unit(module: str) -> str:
    """Return the entry of ``LAYERS`` that *module* belongs to."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def layering_violations(graph: Mapping[str, set[str]], layers: list[tuple[str, ...]]) -> list[str]:
    """Return each import that goes sideways or up in *layers*, or from an unplaced module."""
    level = {name: i for i, layer in enumerate(layers) for name in layer}
    found = []
    for module in sorted(graph):
        here = unit(module)
        if here not in level:
            found.append(f"{module} is in no layer: place it in LAYERS")
            continue
        for target in sorted(graph[module]):
            there = unit(target)
            if there == here:
                continue  # inside one sub-package (acyclic, checked apart)
            if there not in level:
                continue  # reported as unplaced on its own
            if level[there] >= level[here]:
                way = "sideways" if level[there] == level[here] else "up"
                found.append(f"{module} imports {target} ({way} in the layers)")
    return found


def test_the_package_has_no_import_cycle() -> None:
    """No chain of imports inside aioqlog leads back to where it started."""
    assert find_cycle(import_graph(PACKAGE, "aioqlog")) is None


def test_each_module_imports_only_from_the_layers_below() -> None:
    """Every module sits in one layer of LAYERS and imports only from lower ones."""
    assert layering_violations(import_graph(PACKAGE, "aioqlog"), LAYERS) == []


def test_the_scan_reads_the_whole_package() -> None:
    """The scan sees every module, and the imports that tie the data path together."""
    graph = import_graph(PACKAGE, "aioqlog")
    assert {"aioqlog", "aioqlog._bridge", "aioqlog.handlers._base", "aioqlog.config"} <= set(graph)
    assert "aioqlog._lifecycle" in graph["aioqlog._bridge"]  # from . import _lifecycle
    assert "aioqlog._diagnostics" in graph["aioqlog.handlers._base"]  # from .. import
    assert "aioqlog._listener" not in graph["aioqlog._handler"]  # only under TYPE_CHECKING


def test_the_event_loop_is_reached_through_one_low_module() -> None:
    """_backend imports only _diagnostics of aioqlog; the engine reaches the loop through it."""
    graph = import_graph(PACKAGE, "aioqlog")
    assert graph["aioqlog._backend"] <= {"aioqlog._diagnostics"}
    for module in ("_bridge", "_lanes", "_listener"):
        assert "aioqlog._backend" in graph[f"aioqlog.{module}"]


def _write(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_check_catches_a_back_edge_and_a_cycle(tmp_path: Path) -> None:
    """A function-level import up the layers is reported, and so is the cycle it closes."""
    root = _write(
        tmp_path,
        {
            "__init__.py": "from ._top import go\n",
            "_leaf.py": "def f():\n    from ._top import go  # a back-edge\n",
            "_top.py": "from . import _leaf\n\ndef go():\n    pass\n",
            "sub/__init__.py": "",
            "sub/_a.py": "from .._leaf import f\nfrom ._b import x\n",
            "sub/_b.py": "x = 1\n",
        },
    )
    graph = import_graph(root, "pkg")
    layers = [("_leaf",), ("_top", "sub"), ("__init__",)]
    assert layering_violations(graph, layers) == ["pkg._leaf imports pkg._top (up in the layers)"]
    assert find_cycle(graph) == ["pkg._top", "pkg._leaf", "pkg._top"]


def test_the_check_ignores_type_checking_imports_and_places_every_module(tmp_path: Path) -> None:
    """An import under TYPE_CHECKING is no edge; a module missing from the layers is reported."""
    root = _write(
        tmp_path,
        {
            "__init__.py": "",
            "_leaf.py": "import typing\nif typing.TYPE_CHECKING:\n    from ._top import go\n",
            "_top.py": "from ._leaf import f\nfrom ._new import g\n",
            "_new.py": "",
        },
    )
    graph = import_graph(root, "pkg")
    assert graph["pkg._leaf"] == set()
    assert find_cycle(graph) is None
    assert layering_violations(graph, [("_leaf",), ("_top",), ("__init__",)]) == [
        "pkg._new is in no layer: place it in LAYERS"
    ]
