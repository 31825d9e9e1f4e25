"""OmegaConf configs the way verl uses them: a packaged default YAML, an optional user file,
then ``key=value`` dot-list overrides on the command line."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def default_config_path(name: str) -> Path:
    """Path of a packaged default config, e.g. ``default_config_path("index")``."""
    return Path(str(resources.files("gream_verl.configs").joinpath(f"{name}.yaml")))


def load_config(
    name: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    **values: Any,
) -> DictConfig:
    """Merge, in order: packaged ``<name>.yaml``, the user's ``config_file``, keyword ``values``
    (typically parsed CLI flags that are not None), then dot-list ``overrides``.

    Unknown keys in overrides are an error, so a typo never passes silently.
    """
    cfg = OmegaConf.load(default_config_path(name)) if name else OmegaConf.create({})
    OmegaConf.set_struct(cfg, False)
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
    flat = {k: v for k, v in values.items() if v is not None}
    if flat:
        cfg = OmegaConf.merge(cfg, OmegaConf.create(flat))
    if overrides:
        if name:
            OmegaConf.set_struct(cfg, True)
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        except Exception as e:  # omegaconf raises several types; all mean "bad override"
            raise ValueError(f"bad config override {overrides}: {e}") from e
        OmegaConf.set_struct(cfg, False)
    return cfg


def to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
