"""The layer rules of docs/architecture.md, over every module, and no import cycle."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "xcorrdiff"

#: (layer, module prefixes), lowest first; a module's layer is that of its longest prefix.
LAYERS: list[tuple[int, tuple[str, ...]]] = [
    (0, ("_checks", "_files", "_resources", "_version", "options")),
    (1, ("nn",)),
    (2, ("diffusion",)),
    (3, ("data", "verify", "plot", "tutorial", "_synthetic", "config")),
    (4, ("model", "_model_dir", "io", "train", "inference")),
    (5, ("", "accessor", "cli", "demo")),
]


def _name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    inner = module.removeprefix("xcorrdiff").removeprefix(".")
    best = (-1, 0)
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if inner == prefix or inner.startswith(prefix + "."):
                best = max(best, (len(prefix), layer))
    return best[1]


def _imports(module: str) -> set[str]:
    """Every xcorrdiff module ``module`` imports, at any depth of its code."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {name for name in found if name in MODULES}


GRAPH = {module: _imports(module) for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_downward(module: str) -> None:
    upward = sorted(t for t in GRAPH[module] if _layer(t) > _layer(module))
    assert not upward, f"{module} (layer {_layer(module)}) imports higher layers: {upward}"


def test_only_the_cli_imports_the_demo() -> None:
    users = sorted(
        m for m, targets in GRAPH.items()
        if any(t.startswith("xcorrdiff.demo") for t in targets)
        and not m.startswith(("xcorrdiff.demo", "xcorrdiff.cli"))
    )  # fmt: skip
    assert not users


def test_verify_does_not_import_torch() -> None:
    for module, path in MODULES.items():
        if module.startswith("xcorrdiff.verify"):
            names = {
                alias.name.split(".")[0]
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in (node.names if isinstance(node, ast.Import) else [])
            } | {
                (node.module or "").split(".")[0]
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom)
            }
            assert "torch" not in names, module


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_check_can_fail() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_downscale_is_the_function() -> None:
    import xcorrdiff
    import xcorrdiff.inference.api

    assert callable(xcorrdiff.downscale)
    assert xcorrdiff.downscale is xcorrdiff.inference.api.downscale


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, its docstring not counted."""
    body = node.body
    first = body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(
        getattr(first, "value", None), ast.Constant
    )
    if docstring and isinstance(first.value.value, str):  # type: ignore[attr-defined]
        start = body[1].lineno if len(body) > 1 else (first.end_lineno or first.lineno) + 1
        return (node.end_lineno or start) - start + 1
    return (node.end_lineno or first.lineno) - first.lineno + 1


def test_functions_are_short_and_modules_small() -> None:
    long_functions, big_modules = [], []
    for module, path in MODULES.items():
        text = path.read_text()
        if len(text.splitlines()) > 600:
            big_modules.append((module, len(text.splitlines())))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _body_lines(node) > 80:
                long_functions.append((module, node.name, _body_lines(node)))
    assert not long_functions, f"function bodies over 80 lines: {long_functions}"
    assert not big_modules, f"modules over 600 lines: {big_modules}"


# --- docs/architecture.md names only code that exists -------------------------------------

DOC = PACKAGE.parent / "docs" / "architecture.md"
#: Names on the page that are not ours (numpy's, a file of a model directory).
FOREIGN = {"SeedSequence", "config.json"}


def _defined() -> dict[str, set[str]]:
    """Every name defined at module level, and every class's attributes, by module/class."""
    names: dict[str, set[str]] = {"": set()}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            targets: list[str] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                targets = [node.name]
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    targets += [n.id for n in ast.walk(t) if isinstance(n, ast.Name)]
            names.setdefault(module, set()).update(targets)
            names[""].update(targets)
            if isinstance(node, ast.ClassDef):
                members = names.setdefault(node.name, set())
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        members.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members.add(item.target.id)
    return names


def _references() -> list[str]:
    import re

    text = DOC.read_text()
    fenced = re.findall(r"```\n(.*?)```", text, flags=re.S)
    prose = re.sub(r"```\n.*?```", "", text, flags=re.S)
    refs = [t.split("(")[0].strip() for t in re.findall(r"`([^`\n]+)`", prose)]
    for block in fenced:  # module paths and Class.method in the data-flow picture
        refs += re.findall(r"\b(?:\w+/)+\w+\.\w+|\b[A-Z]\w+\.\w+", block)
    return [r for r in refs if r and r not in FOREIGN]


def _exists(ref: str, defined: dict[str, set[str]]) -> bool:
    root = PACKAGE.parent
    if ref.endswith("/") or ref.endswith(".py"):
        return (PACKAGE / ref).exists() or (root / ref).exists()
    if ref.startswith("xcorrdiff"):
        module, _, attr = ref.partition(".")
        return not attr or attr in defined.get(module, set()) or attr in defined["xcorrdiff"]
    head, _, attr = ref.rpartition(".")
    if not head:
        return ref in defined[""]
    module = "xcorrdiff." + head.replace("/", ".")
    return attr in defined.get(module, set()) or attr in defined.get(head, set())


def test_the_architecture_page_names_only_code_that_exists() -> None:
    defined = _defined()
    defined["xcorrdiff"] |= {"downscale", "downscale_to_zarr"}  # lazy names of the package
    refs = _references()
    assert len(refs) > 80  # the page was read
    missing = sorted({r for r in refs if not _exists(r, defined)})
    assert missing == [], f"docs/architecture.md names code that does not exist: {missing}"
