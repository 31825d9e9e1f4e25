"""The few verl 0.9.1 functions the CPU platform cannot reach through verl's registries.

Applied only when the CPU platform is selected (``VERL_PLATFORM=cpu``), from
``gream_verl.verl_cpu.register``. Each patch names the function it wraps and the sha256 of that
function's source in verl 0.9.1; ``tests/verl_cpu/test_patches.py`` fails when verl changes one of
them, so a verl upgrade cannot silently run with a stale patch.

1. ``verl.utils.distributed.initialize_global_process_group_ray`` builds the backend string
   ``f"cpu:gloo,{device}:{backend}"``; on CPU that is ``cpu:gloo,cpu:gloo`` and torch rejects it
   ("Duplicate device type cpu"). The wrapper passes ``backend="cpu:gloo"`` unless the caller
   chose one. Upstream fix: skip the second entry when the device is ``cpu``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Patch:
    """Wrap ``module.name``; ``importers`` are modules that bound the function by name."""

    module: str
    name: str
    source_sha256: str
    importers: tuple[str, ...] = ()


PROCESS_GROUP = Patch(
    module="verl.utils.distributed",
    name="initialize_global_process_group_ray",
    source_sha256="761a94d1a2e058d31a0ac231c89a142abf5daf822e333bac75e84cafcf7507ac",
    importers=("verl.workers.engine_workers",),
)

PATCHES = (PROCESS_GROUP,)
_MARK = "__gream_cpu_patch__"


def source_sha256(func) -> str:
    """sha256 of a function's source text (what the pinned hashes are computed from)."""
    return hashlib.sha256(inspect.getsource(inspect.unwrap(func)).encode()).hexdigest()


def original(patch: Patch):
    """The verl function a patch wraps (unwrapped if the patch is already applied)."""
    return inspect.unwrap(getattr(importlib.import_module(patch.module), patch.name))


def check(patch: Patch) -> None:
    """Raise RuntimeError if verl's function is not the one this patch was written for."""
    found = source_sha256(original(patch))
    if found != patch.source_sha256:
        raise RuntimeError(
            f"gream_verl CPU patch for {patch.module}.{patch.name} was written for verl 0.9.1 "
            f"(source sha256 {patch.source_sha256[:12]}), but the installed function differs "
            f"({found[:12]}); re-check gream_verl/verl_cpu/patches.py against this verl version"
        )


def _cpu_process_group(func):
    @functools.wraps(func)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return func(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    setattr(initialize_global_process_group_ray, _MARK, True)
    return initialize_global_process_group_ray


_WRAPPERS = {PROCESS_GROUP: _cpu_process_group}


def apply() -> list[str]:
    """Check and apply every patch (idempotent); returns the patched names."""
    applied = []
    for patch in PATCHES:
        check(patch)
        module = importlib.import_module(patch.module)
        current = getattr(module, patch.name)
        wrapped = current if getattr(current, _MARK, False) else _WRAPPERS[patch](current)
        setattr(module, patch.name, wrapped)
        # Modules that already did ``from module import name`` hold the old binding.
        for importer in patch.importers:
            if importer in sys.modules and hasattr(sys.modules[importer], patch.name):
                setattr(sys.modules[importer], patch.name, wrapped)
        applied.append(f"{patch.module}.{patch.name}")
    return applied
