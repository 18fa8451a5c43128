"""The import contract type of our own (no function-level imports) finds what it should.
``make lint`` runs every contract on the tree itself."""

import sys
import textwrap
import tomllib

import grimp
import pytest

from tests.factories import REPO
from tests.import_contracts import NoFunctionLevelImports


@pytest.fixture
def shop(tmp_path, monkeypatch):
    """A tiny package of two modules on sys.path: ``shop.cart`` and ``shop.prices``."""
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "prices.py").write_text("RATE = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "shop"
    for name in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
        del sys.modules[name]


def check(package: str, **options):
    contract = NoFunctionLevelImports(
        "no function-level imports", {}, {"containers": [package], **options}
    )
    return contract.check(grimp.build_graph(package, cache_dir=None), verbose=False)


def test_it_finds_an_import_of_our_own_inside_a_function(shop):
    (shop / "cart.py").write_text(
        textwrap.dedent("""
        import json

        def total(items):
            from shop.prices import RATE
            from . import prices
            import decimal  # not ours: allowed
            return RATE * len(items) + prices.RATE

        class Cart:
            def add(self):
                from .prices import RATE
                return RATE
    """)
    )
    found = check("shop").metadata["found"]
    assert found == [
        ("shop.cart", 5, "shop.prices"),
        ("shop.cart", 6, "shop"),
        ("shop.cart", 12, "shop.prices"),
    ]


def test_it_keeps_a_package_whose_imports_are_at_the_top(shop):
    (shop / "cart.py").write_text(
        "from shop.prices import RATE\n\n\ndef total(n):\n    return RATE * n\n"
    )
    assert check("shop").kept


def test_it_skips_what_it_is_told_to_ignore(shop):
    (shop / "migrations").mkdir()
    (shop / "migrations" / "__init__.py").write_text("")
    (shop / "migrations" / "0001.py").write_text("def forwards():\n    from shop import prices\n")
    assert not check("shop").kept
    assert check("shop", ignore=[".migrations."]).kept


def test_every_module_of_the_apps_has_its_room_in_the_contracts():
    """A new module is either domain or interface (contract 2), so the rules see it."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    rooms = next(c for c in config["contracts"] if c["name"].startswith("2."))
    placed = set(rooms["source_modules"]) | set(rooms["forbidden_modules"])
    placed |= {"generations.sandbox"}  # contract 3
    unplaced = []
    for app in ("accounts", "generations"):
        for path in sorted((REPO / app).iterdir()):
            name = path.stem if path.suffix == ".py" else path.name
            is_module = path.suffix == ".py" or (path / "__init__.py").exists()
            module = f"{app}.{name}"
            if (
                is_module
                and name not in ("__init__", "apps", "migrations")
                and module not in placed
            ):
                unplaced.append(module)
    assert unplaced == []
