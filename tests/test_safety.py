"""Nothing in aioqlog evaluates, unpickles or runs what a record carries.

Record content reaches only the user's own formatter and handlers. This scans
the package's source: no eval/exec/compile, no unpickling (``pickle.load``,
``loads``, ``Unpickler``; marshal and shelve not at all), no shell or
subprocess, no dynamic import that a record could steer. Pickling is allowed:
``aioqlog.handlers.SocketHandler`` sends ``pickle.dumps`` of a record's dict,
the stdlib ``SocketHandler``'s wire format; only the receiver unpickles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aioqlog"
SOURCES = sorted(PACKAGE.rglob("*.py"))

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "breakpoint"}
FORBIDDEN_MODULES = {
    "cPickle",
    "_pickle",
    "cloudpickle",
    "dill",
    "marshal",
    "shelve",
    "subprocess",
    "pty",
    "code",
}
#: What may be imported by name from pickle: the dumping side only.
PICKLE_NAMES = {"dumps", "HIGHEST_PROTOCOL", "DEFAULT_PROTOCOL", "PicklingError"}
FORBIDDEN_ATTRIBUTES = {"system", "popen", "spawnl", "spawnv", "execv", "execl"}
#: Loading a pickle, on any object, however reached (``getattr`` included).
LOADING = {"load", "loads", "Unpickler", "_load", "_loads", "_Unpickler", "find_class"}


def offences(path: Path) -> list[str]:
    """Return each forbidden construct in *path*, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                found.append(f"{path.name}:{node.lineno} calls {func.id}()")
            if isinstance(func, ast.Attribute) and func.attr in FORBIDDEN_ATTRIBUTES:
                found.append(f"{path.name}:{node.lineno} calls .{func.attr}()")
            if (
                isinstance(func, ast.Name)
                and func.id == "getattr"
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in LOADING
            ):
                found.append(f"{path.name}:{node.lineno} gets .{node.args[1].value}")
        elif isinstance(node, ast.Attribute) and node.attr in LOADING:
            found.append(f"{path.name}:{node.lineno} uses .{node.attr}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{path.name}:{node.lineno} imports {alias.name}")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] in FORBIDDEN_MODULES
        ):
            found.append(f"{path.name}:{node.lineno} imports from {node.module}")
        elif isinstance(node, ast.ImportFrom) and node.module == "pickle":
            for alias in node.names:
                if alias.name not in PICKLE_NAMES:
                    found.append(f"{path.name}:{node.lineno} imports {alias.name} from pickle")
    return sorted(found, key=lambda line: int(line.split(":")[1].split()[0]))  # walk is not by line


def test_the_scan_reads_the_whole_package() -> None:
    """The scan sees every module of the data path."""
    names = {p.name for p in SOURCES}
    assert {"_bridge.py", "_handler.py", "_listener.py", "_lanes.py", "_dictconfig.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_evaluates_unpickles_or_runs_anything(path: Path) -> None:
    """No eval/exec/compile, unpickling, marshal, shell or subprocess anywhere in aioqlog."""
    assert offences(path) == []


def test_the_scan_catches_what_it_forbids(tmp_path: Path) -> None:
    """A module doing each forbidden thing is reported, line by line."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\n"
        "from subprocess import run\n"
        "import os\n"
        "eval('1')\n"
        "os.system('true')\n"
        "pickle.loads(b'')\n"
        "pickle.load(f)\n"
        "u = pickle.Unpickler\n"
        "from pickle import loads, dumps\n"
        "import marshal\n"
        "import shelve\n"
        "getattr(pickle, 'loads')(b'')\n"
        "pickle.dumps({})\n"
    )
    assert offences(bad) == [
        "bad.py:2 imports from subprocess",
        "bad.py:4 calls eval()",
        "bad.py:5 calls .system()",
        "bad.py:6 uses .loads",
        "bad.py:7 uses .load",
        "bad.py:8 uses .Unpickler",
        "bad.py:9 imports loads from pickle",
        "bad.py:10 imports marshal",
        "bad.py:11 imports shelve",
        "bad.py:12 gets .loads",
    ]
