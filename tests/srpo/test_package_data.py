"""The recipes file ships inside the package (an installed wheel has no recipes/ folder)."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest

import gream_verl
from gream_verl.srpo.recipes import RECIPES_FILE, recipe_overrides

REPO = Path(__file__).resolve().parents[2]


def test_recipes_file_is_package_data():
    tomllib = pytest.importorskip("tomllib")
    package = Path(gream_verl.__file__).resolve().parent
    assert RECIPES_FILE.resolve().is_relative_to(package), f"{RECIPES_FILE} is outside the package {package}"
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gream_verl"]
    relative = RECIPES_FILE.resolve().relative_to(package).as_posix()
    assert any(fnmatch(relative, g) for g in globs), f"{relative} is not in package-data {globs}"
    assert recipe_overrides("gsm8k", env={})[0] == "algorithm.adv_estimator=srpo"


def test_cpu_recipe_is_package_data():
    """The quickstart's CPU SRPO stage runs the recipe from the package, not from recipes/."""
    tomllib = pytest.importorskip("tomllib")
    from gream_verl.quickstart import cpu_backend_available

    package = Path(gream_verl.__file__).resolve().parent
    ok, script = cpu_backend_available()
    if not ok and "does not import" in script:
        pytest.skip(script)
    assert ok, script
    script = Path(script).resolve()
    assert script.is_relative_to(package), f"{script} is outside the package {package}"
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gream_verl"]
    assert any(fnmatch(script.relative_to(package).as_posix(), g) for g in globs), globs
