"""OmegaConf configs the way verl uses them: a packaged default YAML, an optional user file,
then ``key=value`` dot-list overrides on the command line; every key checked before any work.

Where each fact lives (one place each):

* keys and types: one dataclass per stage in :mod:`gream_verl.configs.schema` (OmegaConf structured
  configs). Its fields have no defaults.
* default values and the comments that explain them: ``gream_verl/configs/<stage>.yaml``, the file
  users copy and edit. Loading it fills the schema; a key it sets that the schema lacks, a value of
  the wrong type, or a schema key it leaves unset is an error (tests/test_config.py loads every one).

``load_config`` checks each layer (packaged file, user file, keyword values, each override) against
the schema before merging anything: an unknown key is a :class:`ConfigError` naming the key, where
it came from (file path or override) and the closest valid key; a value of the wrong type (``abc``
or ``3.7`` for an int) is one naming the key and the value. Quickstart stage sections (``index``,
``eval``, ``sft_data``) are the stages' own schemas, so they are checked the same way, and so is
every preset. Open mappings (``dict[str, Any]`` in the schema) pass through to the program that
reads them.

Why the defaults are not in the dataclasses: a default then lives once, beside the comment that
explains it, in the file users copy; the dataclass only has to say what type it is.

To add a key: add ``name: type`` to the stage's dataclass in ``configs/schema.py`` and
``name: default  # what it does`` to ``configs/<stage>.yaml`` (a new section: a new dataclass,
used as the type of a field). Forgetting either side fails every load of that stage.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config key that does not exist, or a value of the wrong type (the CLI prints it, exit 1)."""


def default_config_path(name: str) -> Path:
    """Path of a packaged default config, e.g. ``default_config_path("index")``."""
    return Path(str(resources.files("gream_verl.configs").joinpath(f"{name}.yaml")))


def schema(name: str) -> type:
    """The dataclass holding the keys and types of stage ``name`` (e.g. ``"index"``)."""
    from gream_verl.configs.schema import SCHEMAS

    if name not in SCHEMAS:
        raise ConfigError(f"unknown config {name!r}; choose one of {sorted(SCHEMAS)}")
    return SCHEMAS[name]


def packaged_defaults(name: str) -> DictConfig:
    """The schema of ``name`` filled with the packaged ``<name>.yaml`` (stage sections of the
    quickstart first filled with their own stage's YAML), every value present and type-checked."""
    return copy.deepcopy(_packaged_defaults(name))


@functools.cache
def _packaged_defaults(name: str) -> DictConfig:
    cls = schema(name)
    cfg = OmegaConf.structured(cls)
    sections = {f.name: _packaged_defaults(f.metadata["defaults"]) for f in dataclasses.fields(cls)
                if "defaults" in f.metadata}
    if sections:
        cfg = OmegaConf.merge(cfg, sections)
    path = default_config_path(name)
    cfg = _merge_layers(cfg, cls, [(f"packaged {path}", _read_yaml(path))])
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"packaged {path} gives no default for {missing} (declared in configs/schema.py)")
    return cfg


def load_config(
    name: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    **values: Any,
) -> DictConfig:
    """Merge, in order: packaged ``<name>.yaml``, the user's ``config_file``, keyword ``values``
    (typically parsed CLI flags; None means "not given"), then dot-list ``overrides``.

    Every key of every layer is checked against the schema of ``name`` first, so a typo fails
    before any work. The result is the structured config with new keys allowed (callers may add
    run-time values). Without ``name`` the layers are merged unchecked.
    """
    layers: list[tuple[str, dict]] = []
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        layers.append((f"config file {path}", _read_yaml(path)))
    flat = {k: v for k, v in values.items() if v is not None}
    if flat:
        layers.append(("command-line options", flat))
    layers += _parse_overrides(overrides or [])
    if name is None:
        cfg = OmegaConf.merge(OmegaConf.create({}), *(data for _, data in layers))
        return cfg  # type: ignore[return-value]
    cfg = _merge_layers(packaged_defaults(name), schema(name), layers)
    OmegaConf.set_struct(cfg, False)
    return cfg


def apply_overrides(name: str, cfg: DictConfig, overrides: list[str] | None) -> DictConfig:
    """``cfg`` (a loaded ``name`` config) with dot-list ``overrides`` checked and merged."""
    cfg = _merge_layers(cfg, schema(name), _parse_overrides(overrides or []))
    OmegaConf.set_struct(cfg, False)
    return cfg


def to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


# --- checking ------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict:
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as e:  # noqa: BLE001 - yaml and omegaconf raise several types; all mean "not a config"
        raise ConfigError(f"config file {path} is not valid YAML: {_first_line(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def _parse_overrides(overrides: list[str]) -> list[tuple[str, dict]]:
    """Each ``key=value`` as its own layer, so an error names the override it came from."""
    layers = []
    for text in overrides:
        key, eq, _ = str(text).partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"bad config override {text!r}: expected key=value, e.g. rqkmeans.levels=3")
        try:
            data = OmegaConf.to_container(OmegaConf.from_dotlist([str(text)]), resolve=False)
        except OmegaConfBaseException as e:
            raise ConfigError(f"bad config override {text!r}: {_first_line(e)}") from None
        layers.append((f"bad config override {text!r}", data))
    return layers


def _merge_layers(cfg: DictConfig, cls: type, layers: list[tuple[str, dict]]) -> DictConfig:
    """Check every layer's keys (all unknown keys reported together), then merge each layer,
    type-checking its values; presets found in a layer are checked like the layer itself."""
    problems = [f"{source}: unknown key {path!r}{hint}"
                for source, data in layers for path, hint in _unknown_keys(cls, data, cls)]
    if problems:
        raise ConfigError("\n".join(problems))
    for source, data in layers:
        cfg = _merge_checked(cfg, data, source)
        for f in dataclasses.fields(cls):
            if f.metadata.get("overlays") and isinstance(data.get(f.name), Mapping):
                for overlay, partial in data[f.name].items():  # types of a partial config: merge it
                    _merge_checked(OmegaConf.structured(cls), partial or {}, f"{source} ({f.name}.{overlay})")
    return cfg


def _merge_checked(cfg: DictConfig, data: Mapping, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, data)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ".".join(_only_path(data)) or "?"
        why = _first_line(e)
        if why.startswith("Merge error"):  # a value given where the schema has a section of keys
            why = "this is a section of keys, not a single value"
        raise ConfigError(f"{source}: bad value for {key!r}: {why}") from None


def _only_path(data: Any) -> list[str]:
    """The dotted path of a one-key-per-level mapping such as one override's ``{"a": {"b": 3}}``."""
    path = []
    while isinstance(data, Mapping) and len(data) == 1:
        key, data = next(iter(data.items()))
        path.append(str(key))
    return path


def _first_line(e: Exception) -> str:
    return str(getattr(e, "msg", None) or e).strip().splitlines()[0]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown_keys(cls: type, data: Mapping, root: type, prefix: str = "", schema_prefix: str = ""
                  ) -> list[tuple[str, str]]:
    """``(dotted key, "; did you mean ...?")`` for each key of ``data`` that ``cls`` does not declare."""
    hints = _hints(cls)
    found = []
    for key, value in data.items():
        path, schema_path = f"{prefix}{key}", f"{schema_prefix}{key}"
        sub = hints.get(key) if isinstance(key, str) else None
        if sub is None:  # name the whole key as typed when it is one path, e.g. rqkmeans.levelz=3
            given = ".".join([str(key), *_only_path(value)])
            found.append((prefix + given, _suggestion(given, list(hints), schema_prefix, root)))
        elif dataclasses.is_dataclass(sub) and isinstance(value, Mapping):
            found += _unknown_keys(sub, value, root, f"{path}.", f"{schema_path}.")
        elif _field(cls, key).metadata.get("overlays") and isinstance(value, Mapping):
            for overlay, partial in value.items():
                if isinstance(partial, Mapping):
                    found += _unknown_keys(cls, partial, root, f"{path}.{overlay}.", schema_prefix)
    return found


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _suggestion(given: str, siblings: list[str], schema_prefix: str, root: type) -> str:
    """The closest key beside it, else the schema keys whose last parts are closest (difflib)."""
    close = difflib.get_close_matches(given, siblings, n=1, cutoff=0.6) if "." not in given else []
    if close:
        return f"; did you mean {schema_prefix + close[0]!r}?"
    depth = given.count(".") + 1
    by_tail: dict[str, list[str]] = {}
    for path in _all_paths(root):
        if path.count(".") + 1 >= depth:
            by_tail.setdefault(".".join(path.split(".")[-depth:]), []).append(path)
    tails = difflib.get_close_matches(given, list(by_tail), n=1, cutoff=0.75)
    if tails:
        return f"; did you mean {' or '.join(repr(p) for t in tails for p in by_tail[t][:3])}?"
    return f"; valid keys here: {', '.join(siblings)}"


@functools.cache
def _all_paths(cls: type, prefix: str = "") -> tuple[str, ...]:
    paths: list[str] = []
    for name, sub in _hints(cls).items():
        paths.append(prefix + name)
        if dataclasses.is_dataclass(sub):
            paths += _all_paths(sub, f"{prefix}{name}.")
    return tuple(paths)
