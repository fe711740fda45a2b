"""Every public module of ``skylake/`` says what it exports: an ``__all__`` that lists its own public functions,
classes and constants and names nothing it does not define or import. Parsed with :mod:`ast`, as tests/test_imports.py
reads the import graph; a module is imported only where ast cannot tell: an ``__all__`` built from other
modules' (a package's), or names a module's ``__getattr__`` makes on first use (kept lazy so that
``skylake --help`` starts without the data stack). Private modules (``_name.py``) are exempt."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skylake"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name == "__init__.py" or not p.name.startswith("_"))


def declared_all(tree: ast.Module, module: str = "") -> list[str] | None:
    """The module's ``__all__`` (None when it has none): read from the source when it is a literal, else from
    the imported ``module``."""
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "__all__":
            try:
                return list(ast.literal_eval(node.value))
            except ValueError:  # built from other modules' lists
                return list(importlib.import_module(module).__all__)
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names the module binds at its top level (defined or imported), and its own public functions, classes
    and UPPER_CASE constants."""
    bound, own = set(), set()
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            if not node.name.startswith("_"):
                own.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            bound |= names
            if node in tree.body:  # a module's public CONSTANT
                own |= {n for n in names if n.isupper() and not n.startswith("_")}
        elif isinstance(node, (ast.If, ast.Try)):  # TYPE_CHECKING imports, optional imports
            stack += node.body + node.orelse + [s for h in getattr(node, "handlers", []) for s in h.body]
    return bound, own


def module_id(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def changes_to_all(tree: ast.Module) -> list[int]:
    """Lines that change ``__all__`` after it is made (``append``, ``extend``, ``+=``, a second assignment): the
    list is then not what the source's one literal says."""
    lines, made = [], False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id == "__all__" and node.func.attr in ("append", "extend"):
                lines.append(node.lineno)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == "__all__":
            lines.append(node.lineno)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            if made:
                lines.append(node.lineno)
            made = True
    return sorted(lines)


@pytest.mark.parametrize("path", MODULES, ids=module_id)
def test_public_module_declares_its_names(path):
    tree = ast.parse(path.read_text(), str(path))
    names = declared_all(tree, module_name(path))
    bound, own = top_level_names(tree)
    if path.name == "__init__.py" and names is None:
        assert not own, f"{module_id(path)} defines {sorted(own)} but has no __all__"
        return  # a package that only holds modules
    assert names is not None, f"{module_id(path)} has no __all__"
    changed = changes_to_all(tree)
    assert not changed, f"{module_id(path)}: __all__ changed after it is made, line(s) {changed}: list every name once"
    assert len(names) == len(set(names)), f"{module_id(path)}: __all__ lists a name twice"
    unknown = sorted(set(names) - bound)
    if unknown and "__getattr__" in bound:  # made on first use: they must be there when asked for
        module = importlib.import_module(module_name(path))
        unknown = [name for name in unknown if not hasattr(module, name)]
    assert not unknown, f"{module_id(path)}: __all__ names {unknown}, which the module neither defines nor imports"
    unlisted = sorted(own - set(names))
    assert not unlisted, f"{module_id(path)}: public {unlisted} not in __all__ (list them, or name them _private)"


def test_the_checks_catch_a_module_that_breaks_them():
    tree = ast.parse(
        "import os\n__all__ = ['os', 'gone', 'kept']\ndef kept(): ...\ndef forgotten(): ...\nclass _Hidden: ...\n"
        "LIMIT = 3\n_PRIVATE = 4\n"
    )
    bound, own = top_level_names(tree)
    assert declared_all(tree) == ["os", "gone", "kept"]
    assert sorted(set(declared_all(tree)) - bound) == ["gone"]
    assert sorted(own - set(declared_all(tree))) == ["LIMIT", "forgotten"]
    assert declared_all(ast.parse("x = 1\n")) is None
    assert changes_to_all(ast.parse("__all__ = ['a']\n__all__.append('b')\n__all__ += ['c']\n")) == [2, 3]
    assert changes_to_all(tree) == []
