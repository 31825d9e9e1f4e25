"""Stage runner with artifact caching by config hash, so a pipeline can be resumed after Ctrl-C.

Each stage writes into ``<root>/<stage>/``. The runner gives the stage function a fresh temporary
folder beside it; only when the function returns does the runner write ``stage_config.json`` and the
done-marker ``.done.json`` (config hash, summary, wall time) into it and rename it into place.
An interrupted or failing stage therefore leaves no partial artifact, and a stage whose
done-marker carries the current config hash is skipped.

A stage's hash covers its own config, the hashes of the stages it reads from (so changing an
upstream stage re-runs everything downstream of it) and the code that produced it: the package
version plus a SHA-256 over every source file of the installed ``gream_verl`` package (``.py`` and
its packaged YAML/text files; ``__pycache__`` left out). An upgraded or edited checkout therefore
recomputes instead of reusing artifacts made by other code. The whole package, not the modules one
stage imports: a stage reaches most of the package through lazy imports, and a list per stage would
go stale silently, which is the failure this guards against; the price is that any code change re-runs
every stage. Hashing ~70 files (~0.6 MB) takes a few milliseconds and is done once per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gream_verl.io import write_json

log = logging.getLogger(__name__)

DONE_MARKER = ".done.json"
CONFIG_FILE = "stage_config.json"  # not config.json: a stage folder may be a HF model

StageFunc = Callable[[Path], Mapping[str, Any] | None]


def config_hash(config: Any, upstream: Sequence[str] = (), code: str = "") -> str:
    """Short stable hash of a JSON-able config plus upstream hashes and the code fingerprint
    (key order does not matter)."""
    payload = json.dumps({"config": config, "upstream": list(upstream), "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@functools.cache
def code_fingerprint() -> str:
    """``<package version>+<sha256 of the package's source files>`` (16 hex digits), e.g. ``0.1.0+3fa1...``."""
    import gream_verl

    return f"{gream_verl.__version__}+{package_digest(Path(gream_verl.__file__).parent)}"


def package_digest(folder: Path) -> str:
    """SHA-256 over the relative path and bytes of every file under ``folder`` (no ``__pycache__``)."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass
class StageResult:
    """What a stage produced: its folder, its summary and whether this run skipped it."""

    name: str
    path: Path
    config_hash: str
    summary: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
    wall_s: float = 0.0


class Pipeline:
    """Runs named stages under ``root`` in the order they are called, caching each by config hash.

    ``pipeline.stage("index", cfg, build, after=["embed"])`` runs ``build(tmp_dir)`` unless
    ``root/index`` is already done with the same hash. ``results`` keeps every stage's outcome in
    order (for the final report).
    """

    def __init__(self, root: str | os.PathLike, echo: Callable[[str], None] = print, code: str | None = None):
        self.root = Path(root)
        self.echo = echo
        self.code = code_fingerprint() if code is None else code  # tests pass their own
        self.results: dict[str, StageResult] = {}

    def path(self, name: str) -> Path:
        return self.root / name

    def done(self, name: str) -> dict[str, Any] | None:
        """The done-marker of a finished stage, or None if it has never finished."""
        marker = self.path(name) / DONE_MARKER
        if not marker.is_file():
            return None
        try:
            return json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # an unreadable marker means "not done": the stage runs again

    def stage(
        self,
        name: str,
        config: Mapping[str, Any],
        func: StageFunc,
        after: Sequence[str] = (),
        force: bool = False,
    ) -> StageResult:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad stage name {name!r}")
        missing = [a for a in after if a not in self.results]
        if missing:
            raise KeyError(f"stage {name!r} runs after {missing}, which have not run in this pipeline")
        config = dict(config)
        digest = config_hash(config, [self.results[a].config_hash for a in after], self.code)
        number = len(self.results) + 1
        marker = self.done(name)
        if not force and marker is not None and marker.get("config_hash") == digest:
            result = StageResult(name, self.path(name), digest, dict(marker.get("summary") or {}), True,
                                 float(marker.get("wall_s", 0.0)))
            self.echo(f"[{number}] {name}: up to date ({digest}), skipped")
            self.results[name] = result
            return result

        changed = "" if marker is None else " (code changed)" if marker.get("code") != self.code else " (config changed)"
        self.echo(f"[{number}] {name}: running{changed}")
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(f".{name}.*.tmp"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=self.root))
        start = time.perf_counter()
        try:
            summary = dict(func(tmp) or {})
            wall_s = time.perf_counter() - start
            write_json(tmp / CONFIG_FILE, config)
            write_json(tmp / DONE_MARKER, {"stage": name, "config_hash": digest, "code": self.code, "wall_s": wall_s,
                                           "summary": summary})
            _replace_dir(tmp, self.path(name))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.echo(f"[{number}] {name}: done in {wall_s:.1f}s")
        result = StageResult(name, self.path(name), digest, summary, False, wall_s)
        self.results[name] = result
        return result


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst``; an old ``dst`` is first renamed aside, then deleted."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old.{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
