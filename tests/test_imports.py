"""The package's import graph: one direction, no circles.

Parses every module of ``skylake/`` with :mod:`ast` (nothing is imported), resolves
relative and absolute ``skylake`` imports to modules, and checks two house rules:

- no import circle anywhere in ``skylake/`` (strongly connected components of size 1);
- ``skylake/lake/`` (storage, log, transaction, snapshots, registry) imports no product
  package, and no runtime package imports the synthetic generators;
- no module imports a module of a higher layer (:mod:`skylake.layers`: base, lake, settings, frame,
  cameras, tasks, products, chain, tools).

Imports inside functions count too: a deferred import hides a circle, it does not
remove it. Imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skylake"

# Packages holding products, cameras or services: the storage layer must not know them.
PRODUCT_PACKAGES = ("frame", "calib", "objects", "maps", "allsky", "db", "ensemble", "refcat")
# Who may import the synthetic generators (besides themselves): the two demos and the test helpers.
SYNTHETIC_USERS = ("skylake.demo", "skylake.allsky.demo", "skylake.testing", "skylake.synthetic")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (imports for annotations only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def import_graph() -> dict[str, set[str]]:
    """Map each ``skylake`` module to the ``skylake`` modules it imports."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        base = name.split(".") if is_package else name.split(".")[:-1]
        targets: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    root = base[: len(base) - node.level + 1]
                    prefix = ".".join(root + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # `from pkg import name` imports pkg.name when that is a module, else pkg.
                candidates = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
            else:
                continue
            for candidate in candidates:
                if not candidate.startswith("skylake"):
                    continue
                # The longest known module the dotted name starts with.
                while candidate and candidate not in modules:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def _without_parent_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # Importing skylake.lake.log runs skylake/lake/__init__.py, but a module of a package importing its
    # own package's __init__ (which re-exports it) is the normal layout, not a circle.
    return {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_the_graph_sees_known_edges():
    graph = import_graph()
    assert "skylake.lake.storage" in graph["skylake.lake.log"]
    assert "skylake.lake.transaction" in graph["skylake.lake.lake"]
    assert any(t.startswith("skylake.lake") for t in graph["skylake.ingest"])


def test_the_circle_finder_finds_a_circle():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    circles = import_circles(_without_parent_packages(import_graph()))
    assert not circles, "import circles in skylake/:\n" + "\n".join(" <-> ".join(c) for c in circles)


@pytest.mark.parametrize("product", PRODUCT_PACKAGES)
def test_lake_imports_no_product(product):
    graph = import_graph()
    offenders = sorted(
        f"{m} imports {t}"
        for m, ts in graph.items()
        if m.startswith("skylake.lake")
        for t in ts
        if t == f"skylake.{product}" or t.startswith(f"skylake.{product}.")
    )
    assert not offenders, "\n".join(offenders)


def test_runtime_does_not_import_the_generators():
    graph = import_graph()
    offenders = sorted(
        f"{m} imports {t}"
        for m, ts in graph.items()
        if not m.startswith(SYNTHETIC_USERS)
        for t in ts
        if t == "skylake.synthetic" or t.startswith("skylake.synthetic.")
    )
    assert not offenders, "\n".join(offenders)


def test_the_command_line_starts_without_the_data_stack():
    """``skylake --help`` (and every command's argument parsing) imports no pyarrow, pandas or numpy:
    a sub-command's module that imports the lake at its top made ``--help`` 10x slower (0.08 -> 0.8 s,
    benchmarks/startup.py). Run in a fresh interpreter: this process has imported everything."""
    import subprocess
    import sys

    heavy = ("pyarrow", "pandas", "numpy", "hats", "astropy", "dask", "skylake.lake.lake")
    code = f"import sys, skylake.cli; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [], f"importing skylake.cli loads {out}"


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every (importer, imported) pair whose imported module is in a higher layer (skylake.layers)."""
    from skylake.layers import layer_of

    return sorted((a, b) for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def test_every_module_has_a_layer():
    from skylake.layers import layer_of

    for module in import_graph():
        layer_of(module)


def test_no_import_goes_up_the_layers():
    found = upward_imports(import_graph())
    assert not found, "imports that go up skylake/layers.py's order:\n" + "\n".join(f"{a} -> {b}" for a, b in found)


def test_the_layer_check_sees_an_upward_import():
    assert upward_imports({"skylake.lake.log": {"skylake.frame.extract"}, "skylake.cli": {"skylake.lake"}}) == [
        ("skylake.lake.log", "skylake.frame.extract")
    ]


# -- the transaction's own business -----------------------------------------------------------------

#: Where the log keeps staging areas and how it names rewritten files: products use StagingArea instead.
STAGING_NAMES = {"staging_path", "STAGING_DIR", "rewritten_rel"}
#: A transaction's file actions and bookkeeping, which only skylake/lake/ touches (products call its methods).
TRANSACTION_PRIVATE = {"adds", "removes", "metadata", "catalogs", "bytes_staged", "count_changes", "index_added"}
TRANSACTION_PRIVATE |= {"index_dropped", "index_staged", "next_frame_id", "_moving", "_in_place", "_publish"}
TRANSACTION_PRIVATE |= {"rewrite_without", "_rewrite_without"}  # rows leave a table by Table.remove_where only
TRANSACTION_NAMES = {"tx", "txn", "transaction"}


def staging_leaks(source: str) -> list[str]:
    """What a module's code does with staging paths or a transaction's private parts, one line each."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("skylake.lake"):
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name in STAGING_NAMES]
        elif isinstance(node, ast.Attribute) and node.attr in STAGING_NAMES:
            found.append(f"line {node.lineno}: uses {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in TRANSACTION_PRIVATE
            and ast.unparse(node.value).split(".")[-1] in TRANSACTION_NAMES
        ):
            found.append(f"line {node.lineno}: touches {ast.unparse(node)}")
    return sorted(found, key=lambda line: int(line.split()[1].rstrip(":")))


def test_no_module_outside_the_lake_knows_staging_paths_or_a_transactions_sets():
    """Products stage through the transaction's methods and its StagingArea (``tx.area``), never by path."""
    found = [
        f"{path.relative_to(PACKAGE.parent)} {leak}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "lake" not in path.relative_to(PACKAGE).parts[:1]
        for leak in staging_leaks(path.read_text())
    ]
    assert not found, "\n".join(found)


def test_the_staging_check_sees_a_leak():
    code = (
        "from skylake.lake.log import staging_path, utc_now\n"
        "tx.moving\ntx._moving.add('objects')\nself.tx.adds.append(a)\nentry.adds\nlog.staging_path('b')\n"
    )
    assert staging_leaks(code) == [
        "line 1: imports staging_path",
        "line 3: touches tx._moving",
        "line 4: touches self.tx.adds",
        "line 6: uses log.staging_path",
    ]


def test_the_transaction_module_names_no_table():
    """lake/transaction.py moves files: which table needs what at the commit is the registry's business."""
    tree = ast.parse((PACKAGE / "lake" / "transaction.py").read_text())
    from skylake.lake import tables

    names = {n for n in dir(tables) if n.isupper() and isinstance(getattr(tables, n), str)}
    used = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in names})
    assert not used, f"lake/transaction.py names the tables {used}"
