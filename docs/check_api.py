"""Every public name of fastws is in the API reference and has a docstring.

The public modules are the ones under ``src/fastws`` whose dotted name has no
part starting with ``_`` (``__main__`` excluded). For each of them:

- ``docs/reference/<module>.md`` exists and renders it with ``::: <module>``;
- the module has a docstring;
- every name in its ``__all__`` is documented in the reference: a module page
  renders its ``__all__`` (mkdocstrings, ``filters: public``); a package page
  (``members: false``) lists its names in a table that ``docs/hooks.py``
  generates, linking each to the module page that renders it, so such a name
  must be in the ``__all__`` of a (non-package) module page too;
- every such name has a docstring: classes and functions their own
  ``__doc__``, constants and type aliases an attribute docstring (a string
  literal right after the assignment, which mkdocstrings renders).

Names that lack a docstring today are listed in ``UNDOCUMENTED`` below: a new
one fails the check; a listed one that has gained its docstring is reported
(remove it from the list). Everything is read from the source and the imported
modules: no mkdocs needed, no network, well under a second.

With ``--site DIR`` (after ``mkdocs build -d DIR``) it also checks that the
built site's ``objects.inv`` holds every identifier, i.e. that mkdocstrings
really rendered each name.

    python docs/check_api.py [--site DIR]
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
REFERENCE = DOCS / "reference"
ROOT = DOCS.parent
PACKAGE = "fastws"

# Public names without a docstring, as "module.name" at the module that documents
# them. Shrink it: add the docstring in src/, then remove the line here.
UNDOCUMENTED: frozenset[str] = frozenset(
    {
    }
)


def public_module_names() -> list[str]:
    """The public modules of fastws, from the source tree (nothing imported)."""
    src = ROOT / "src" / PACKAGE
    names = [PACKAGE]
    for info in pkgutil.walk_packages([str(src)], PACKAGE + "."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts):
            continue
        names.append(info.name)
    return sorted(names)


def source_path(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _resolve_relative(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


def attribute_docstring(module: str, name: str, _seen: set[tuple[str, str]] | None = None) -> str | None:
    """The string literal right after ``name = ...`` (or ``name: T = ...``) at the top
    level of ``module`` (also inside ``if``/``try`` blocks), following ``from x import
    name`` to the module that assigns it."""
    seen = _seen if _seen is not None else set()
    if (module, name) in seen:
        return None
    seen.add((module, name))
    path = source_path(module)
    if path is None:
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    imports: list[tuple[str, str]] = []

    def scan(body: list[ast.stmt]) -> str | None:
        for index, node in enumerate(body):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                after = body[index + 1] if index + 1 < len(body) else None
                if (
                    isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)
                ):
                    return after.value.value
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        imports.append((_resolve_relative(module, is_package, node), alias.name))
            for block in ("body", "orelse", "finalbody"):
                if isinstance(node, (ast.If, ast.Try)) and getattr(node, block, None):
                    found = scan(getattr(node, block))
                    if found:
                        return found
            if isinstance(node, ast.Try):
                for handler in node.handlers:
                    found = scan(handler.body)
                    if found:
                        return found
        return None

    found = scan(tree.body)
    if found:
        return found
    for other, other_name in imports:
        found = attribute_docstring(other, other_name, seen)
        if found:
            return found
    return None


def is_code(obj: Any) -> bool:
    """Classes and functions carry their own ``__doc__``; anything else (constants,
    type aliases) is documented by an attribute docstring."""
    return inspect.isclass(obj) or inspect.isroutine(obj)


# The codec backends implement one interface, documented in its stub (the
# compiled module and the twin carry no docstrings; mkdocstrings reads the stub).
STUBS = {"fastws._codec": "_codec.pyi", "fastws._codec_py": "_codec.pyi"}


def stub_docstring(obj: Any) -> str | None:
    stub = STUBS.get(getattr(obj, "__module__", ""))
    if stub is None:
        return None
    tree = ast.parse((ROOT / "src" / PACKAGE / stub).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == obj.__name__:
            return ast.get_docstring(node)
    return None


def docstring(module: str, name: str, obj: Any) -> str | None:
    if is_code(obj):
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        if isinstance(doc, str) and doc.strip():
            return doc
        return stub_docstring(obj)
    return attribute_docstring(module, name)


@dataclass
class Page:
    module: str
    path: Path
    exists: bool = False
    renders: bool = False
    is_package_page: bool = False
    explicit: set[str] = field(default_factory=set)


def reference_page(module: str) -> Page:
    path = REFERENCE / f"{module}.md"
    page = Page(module, path)
    if path.exists():
        page.exists = True
        text = path.read_text(encoding="utf-8")
        directive = re.search(rf"^::: {re.escape(module)}\s*$(?P<options>(\n {{4}}.*)*)", text, re.M)
        if directive:
            page.renders = True
            page.is_package_page = bool(re.search(r"members:\s*false", directive.group("options")))
        # "::: module.Name": one name rendered on its own (a class not in the module's __all__)
        page.explicit = set(re.findall(rf"^::: ({re.escape(module)}\.\w+)\s*$", text, re.M))
    return page


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    undocumented: list[str] = field(default_factory=list)
    not_imported: list[str] = field(default_factory=list)
    identifiers: set[str] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)
    exports: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)


def home(package: str, name: str, modules: dict[str, Any], pages: dict[str, Page]) -> str | None:
    """The module page that renders ``package.name``: a non-package module page whose
    ``__all__`` holds the same object (where it is defined, if that module is public;
    else where it is assigned; else the first in dotted order)."""
    obj = getattr(modules[package], name)
    candidates = [
        module
        for module, mod in sorted(modules.items())
        if not pages[module].is_package_page and name in getattr(mod, "__all__", ()) and getattr(mod, name, None) is obj
    ]
    if not candidates:
        defined_in = getattr(obj, "__module__", None)
        if defined_in in pages and f"{defined_in}.{name}" in pages[defined_in].explicit:
            return defined_in
        return None
    defined_in = getattr(obj, "__module__", None) if is_code(obj) else None
    if defined_in in candidates:
        return defined_in
    for module in candidates:
        path = source_path(module)
        if path and re.search(rf"^{re.escape(name)}\s*[:=]", path.read_text(encoding="utf-8"), re.M):
            return module
    return candidates[0]


def check() -> Report:
    report = Report()
    modules: dict[str, Any] = {}
    pages: dict[str, Page] = {}
    for module in public_module_names():
        pages[module] = page = reference_page(module)
        if not page.exists:
            report.errors.append(f"{module}: no reference page {page.path.relative_to(ROOT)}")
        elif not page.renders:
            report.errors.append(f"{module}: {page.path.relative_to(ROOT)} has no '::: {module}' directive")
        try:
            modules[module] = importlib.import_module(module)
        except ImportError as exc:  # an optional dependency (uvicorn, redis...) is missing
            report.not_imported.append(f"{module} ({exc})")
    known = set(pages)
    for page_path in sorted(REFERENCE.glob("*.md")):
        if page_path.stem not in known and page_path.stem != "index":
            report.errors.append(f"{page_path.relative_to(ROOT)}: {page_path.stem} is not a public module")

    for module, mod in sorted(modules.items()):
        report.identifiers.add(module)
        report.modules.add(module)
        if not (mod.__doc__ or "").strip():
            report.undocumented.append(module)
        names = getattr(mod, "__all__", None)
        if names is None:
            report.errors.append(f"{module}: no __all__")
            continue
        for name in names:
            if not hasattr(mod, name):
                report.errors.append(f"{module}.{name}: in __all__ but not defined")
                continue
            where = module
            if pages[module].is_package_page:
                found = home(module, name, modules, pages)
                if found is None:
                    report.errors.append(
                        f"{module}.{name}: listed on a package page, but no module page renders it"
                        " (add it to the __all__ of the module that defines it)"
                    )
                    continue
                report.exports.setdefault(module, []).append((name, found))
                report.identifiers.add(f"{found}.{name}")
                where = found
            else:
                report.identifiers.add(f"{module}.{name}")
            if docstring(where, name, getattr(mod, name)) is None:
                report.undocumented.append(f"{where}.{name}")

    undocumented = set(report.undocumented)
    for name in sorted(undocumented - UNDOCUMENTED):
        report.errors.append(f"{name}: no docstring")
    # Listed but documented now (or gone): not an error, but the list should shrink.
    report.stale = sorted(UNDOCUMENTED - undocumented)
    return report


def inventory(site: Path) -> set[str]:
    """The identifiers in a built site's objects.inv (Sphinx inventory v2)."""
    data = (site / "objects.inv").read_bytes()
    lines = data.split(b"\n", 4)
    names = set()
    for line in zlib.decompress(lines[4]).decode().splitlines():
        if line.strip():
            names.add(line.split(" ", 1)[0])
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, help="a site built by mkdocs: check its objects.inv too")
    args = parser.parse_args(argv)
    report = check()
    errors = list(report.errors)
    if report.not_imported:
        errors += [f"{m}: not importable, not checked" for m in report.not_imported]
    if args.site:
        rendered = inventory(args.site)
        wanted = {name for name in report.identifiers if name not in report.modules}
        for exports in report.exports.values():
            wanted |= {f"{where}.{name}" for name, where in exports}
        errors += [f"{name}: not rendered in {args.site}/objects.inv" for name in sorted(wanted - rendered)]
    print(f"{len(report.identifiers)} public modules and names checked", file=sys.stderr)
    if UNDOCUMENTED:
        print(f"known without a docstring ({len(UNDOCUMENTED)}): " + ", ".join(sorted(UNDOCUMENTED)), file=sys.stderr)
    for name in report.stale:
        print(
            f"{name} has a docstring now (or is gone): remove it from UNDOCUMENTED in docs/check_api.py",
            file=sys.stderr,
        )
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
