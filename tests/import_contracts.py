"""An import-linter contract type of the project's own: no function-level imports of
our own modules.

An import inside a function hides an edge from the import graph, and so from every
other contract: that is how loops between modules stay invisible. Migrations are
exempt (Django runs them against historical models). Configured in pyproject.toml.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from importlinter import Contract, ContractCheck, fields, output


class NoFunctionLevelImports(Contract):
    """Options:

    - ``containers``: the packages whose modules are checked (and whose modules may
      not be imported inside a function).
    - ``ignore``: module name fragments to skip, e.g. ``.migrations.``.
    """

    type_name = "no_function_level_imports"

    containers = fields.ListField(subfield=fields.StringField())
    ignore = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph, verbose: bool) -> ContractCheck:
        ours = tuple(self.containers)
        skipped = tuple(self.ignore or ())
        found = []
        for module in sorted(graph.modules):
            if not module.startswith(ours) or any(s in f".{module}." for s in skipped):
                continue
            path = _module_file(module)
            if path is None:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            for line, imported in sorted(set(_function_level_imports(tree, package))):
                if imported.split(".")[0] in ours:
                    found.append((module, line, imported))
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, line, imported in check.metadata["found"]:
            output.print_error(f"{module}:{line} imports {imported} inside a function", bold=False)
        output.new_line()
        output.print_error(
            "Import at the top of the module; if that makes a loop, the loop "
            "is the problem to solve.",
            bold=False,
        )


def _module_file(module: str) -> Path | None:
    """The source file of ``module``, found from its top package's folder without importing
    anything below it (a package's ``__init__`` may need Django set up)."""
    top, _, rest = module.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = (
        Path(next(iter(spec.submodule_search_locations)), *rest.split("."))
        if rest
        else Path(next(iter(spec.submodule_search_locations)))
    )
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _function_level_imports(tree: ast.AST, package: str):
    """(line, absolute module) of every import inside a function or method body."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                for alias in inner.names:
                    yield inner.lineno, alias.name
            elif isinstance(inner, ast.ImportFrom):
                yield inner.lineno, _absolute(inner, package)


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, node.module] if node.module else base)
