"""What a service's image must hold: the third-party distributions its code imports, and
their closure in uv.lock, compared in `tests/deploy/test_images.py` with what
`uv export --package vigil-<service>` (the Dockerfile's install list) gives.

The imports are read with `ast` from every module of the service and from the modules of
`vigil.common` it reaches (an import of `vigil.common.x` runs the `__init__` of each parent
package too); imports under `if TYPE_CHECKING:` do not run and are left out. A module path
is mapped to the installed distribution whose files hold it (the longest dotted prefix that
some distribution owns), so namespace packages such as `opentelemetry` resolve per module.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker, default_environment

ROOT = Path(__file__).resolve().parents[2]
COMMON_SRC = ROOT / "libs" / "common" / "src"
SERVICES = ("ingest", "controller", "engine", "executor", "sink")


def normalize(name: str) -> str:
    """A distribution's name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, package: str, lazy: bool = False) -> Iterator[tuple[str, bool]]:
    """(dotted name, lazy) of each run-time import; lazy = inside a function body."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(child, package=package, lazy=lazy)
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            yield base, lazy
            yield from ((f"{base}.{alias.name}", lazy) for alias in node.names)
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _imports(node, package=package, lazy=inner)


def _module_file(name: str, roots: Iterable[Path]) -> Path | None:
    parts = name.split(".")
    for root in roots:
        module = root.joinpath(*parts)
        for candidate in (module.with_suffix(".py"), module / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def imported_modules(service: str) -> dict[str, bool]:
    """Third-party dotted names the service imports → whether only lazily (every path to it
    runs through an import inside a function: it is loaded only when that code runs)."""
    roots = (COMMON_SRC, ROOT / "services" / service / "src")
    service_root = roots[1] / "vigil" / service
    pending = [
        (".".join(path.relative_to(roots[1]).with_suffix("").parts), path, False)
        for path in sorted(service_root.rglob("*.py"))
    ]
    seen: dict[Path, bool] = {}
    third_party: dict[str, bool] = {}
    while pending:
        name, path, lazy = pending.pop()
        if path in seen and (lazy or not seen[path]):
            continue  # already walked, as eagerly as this
        seen[path] = lazy
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        package = package.removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for imported, inner in _imports(tree, package=package):
            top = imported.partition(".")[0]
            reached_lazily = lazy or inner
            if top == "vigil":
                parts = imported.split(".")
                for depth in range(2, len(parts) + 1):
                    dotted = ".".join(parts[:depth])
                    found = _module_file(dotted, roots)
                    if found is not None:
                        pending.append((dotted, found, reached_lazily))
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                third_party[imported] = third_party.get(imported, True) and reached_lazily
    return third_party


@cache
def _owners() -> dict[str, set[str]]:
    """Dotted module prefix (`opentelemetry.sdk`) → distributions with files under it."""
    owners: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = normalize(dist.metadata["Name"])
        for file in dist.files or ():
            parts = file.parts
            if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] == "..":
                continue
            stem = (*parts[:-1], parts[-1].split(".")[0])
            for depth in range(1, len(stem) + 1):
                owners.setdefault(".".join(stem[:depth]), set()).add(name)
    return owners


def distributions_of(modules: Iterable[str]) -> dict[str, set[str]]:
    """Distribution → the imported modules it provides; a module no one owns raises.

    A bare namespace (`opentelemetry` of `from opentelemetry import trace`) has many owners;
    it is fine when a module under it resolved (`opentelemetry.trace`), an error otherwise.
    """
    owners = _owners()
    found: dict[str, set[str]] = {}
    namespaces: set[str] = set()
    for module in sorted(modules):
        parts = module.split(".")
        for depth in range(len(parts), 0, -1):
            dists = owners.get(".".join(parts[:depth]))
            if not dists:
                continue
            if len(dists) > 1 and depth == 1:
                namespaces.add(module)
            else:
                for dist in dists:
                    found.setdefault(dist, set()).add(module)
            break
        else:
            msg = f"{module}: no installed distribution provides it (not in the dev venv?)"
            raise LookupError(msg)
    resolved = {module for provided in found.values() for module in provided}
    for namespace in namespaces:
        if not any(module.startswith(f"{namespace}.") for module in resolved):
            msg = f"{namespace}: provided by several distributions {sorted(owners[namespace])}"
            raise LookupError(msg)
    return found


def _applies(marker: str | None) -> bool:
    """Whether a lock or export marker holds on the images' platform (Linux, CPython 3.13)."""
    if not marker:
        return True
    environment: dict[str, str] = {
        **{key: str(value) for key, value in default_environment().items()},
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_version": "3.13",
        "extra": "",
    }
    return Marker(marker).evaluate(environment)


@cache
def _lock() -> dict[str, dict[str, object]]:
    with (ROOT / "uv.lock").open("rb") as file:
        return {normalize(p["name"]): p for p in tomllib.load(file)["package"]}


def lock_closure(roots: Iterable[str]) -> set[str]:
    """`roots` and everything they depend on in uv.lock, extras followed, on Linux."""
    lock = _lock()
    pending: list[tuple[str, tuple[str, ...]]] = [(normalize(r), ()) for r in roots]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while pending:
        name, extras = pending.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        package = lock[name]
        dependencies = list(package.get("dependencies", []))  # type: ignore[call-overload]
        optional: dict[str, list[dict[str, object]]] = package.get(  # type: ignore[assignment]
            "optional-dependencies", {}
        )
        for extra in extras:
            dependencies.extend(optional.get(extra, []))
        for dependency in dependencies:
            if _applies(dependency.get("marker")):
                wanted = tuple(sorted(dependency.get("extra", [])))
                pending.append((normalize(dependency["name"]), wanted))
    return {name for name, _ in seen}


def wheels(name: str) -> list[str]:
    """File names of the wheels uv.lock has for a distribution."""
    entries: list[dict[str, str]] = _lock()[normalize(name)].get("wheels", [])  # type: ignore[assignment]
    return [entry["url"].rsplit("/", 1)[-1] for entry in entries]


def export_lines(text: str) -> Iterator[tuple[str, str | None]]:
    """(requirement, marker) of each line of a `uv export --no-hashes --no-annotate`."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        requirement, _, marker = line.partition(" ; ")
        yield requirement.strip(), marker.strip() or None


def exported_distributions(text: str) -> set[str]:
    """The third-party distributions an export installs on Linux."""
    return {
        normalize(requirement.partition("==")[0])
        for requirement, marker in export_lines(text)
        if "==" in requirement and _applies(marker)
    }
