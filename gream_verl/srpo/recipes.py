"""Hydra override lists of the SRPO recipes in ``gream_verl/srpo/recipes.yaml``.

The YAML is package data, so an installed wheel has it too. ``python -m gream_verl.srpo.recipes
NAME`` prints one override per line (``recipes/srpo/run.sh`` passes them to
``python -m verl.trainer.main_ppo``). Placeholders such as ``{model_path}`` come from environment
variables (``GREAM_MODEL_PATH``, ``GREAM_RL_DATA``, ``GREAM_ROLLOUT``, ``GREAM_N_GPUS``,
``GREAM_MAX_RESPONSE_LENGTH``), else the recipe's or the file's defaults.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf

RECIPES_FILE = Path(str(resources.files("gream_verl.srpo").joinpath("recipes.yaml")))
ENV = {
    "model_path": "GREAM_MODEL_PATH",
    "data_dir": "GREAM_RL_DATA",
    "rollout": "GREAM_ROLLOUT",
    "n_gpus": "GREAM_N_GPUS",
    "max_response_length": "GREAM_MAX_RESPONSE_LENGTH",
}


def load_recipes(path: str | Path = RECIPES_FILE) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: recipes file not found")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]


def recipe_names(path: str | Path = RECIPES_FILE) -> list[str]:
    return list(load_recipes(path)["recipes"])


def recipe_overrides(name: str, env: Mapping[str, str] | None = None, path: str | Path = RECIPES_FILE) -> list[str]:
    """The recipe's full override list with placeholders filled."""
    spec = load_recipes(path)
    recipes = spec["recipes"]
    if name not in recipes:
        raise KeyError(f"unknown recipe {name!r}; expected one of {sorted(recipes)}")
    recipe = recipes[name]
    env = os.environ if env is None else env
    dataset = recipe.get("dataset", name)
    values = {**spec.get("placeholders", {}), **recipe.get("placeholders", {})}
    values = {k: str(v).format(dataset=dataset) for k, v in values.items()}
    values.update({k: env[var] for k, var in ENV.items() if env.get(var)})
    base = spec[recipe["base"]] if recipe.get("base") else []
    lines = [*base, *recipe.get("overrides", [])]
    try:
        return [line.format(**values) for line in lines]
    except KeyError as e:
        raise KeyError(f"recipe {name!r} uses placeholder {e} that has no value") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m gream_verl.srpo.recipes RECIPE   (recipes: {', '.join(recipe_names())})", file=sys.stderr)
        return 2
    try:
        print("\n".join(recipe_overrides(argv[0])))
    except (KeyError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
