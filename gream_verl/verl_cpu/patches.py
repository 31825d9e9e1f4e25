"""The few verl 0.9.1 call sites the CPU platform cannot reach through verl's registries.

Applied only when the CPU platform is selected (``VERL_PLATFORM=cpu``), from
``gream_verl.verl_cpu.register``. Each patch pins the sha256 of the verl source it was written
against (the function it wraps, or the function whose behaviour it changes);
``tests/verl_cpu/test_patches.py`` fails when verl changes one of them, and ``apply`` refuses to
patch a changed function, so a verl upgrade cannot silently run with a stale patch.

1. ``verl.utils.distributed.initialize_global_process_group_ray`` builds the backend string
   ``f"cpu:gloo,{device}:{backend}"``; on CPU that is ``cpu:gloo,cpu:gloo`` and torch rejects it
   ("Duplicate device type cpu"). The wrapper passes ``backend="cpu:gloo"`` unless the caller
   chose one. Upstream fix: skip the second entry when the device is ``cpu``.
2. ``FSDPEngine._build_fsdp_module`` (fsdp2) gives forward-only engines (the reference model)
   ``CPUOffloadPolicy(pin_memory=True)``; pinning host memory needs an accelerator ("Cannot access
   accelerator device when none is available"). The name ``CPUOffloadPolicy`` in verl's
   ``transformer_impl`` module is replaced by a subclass that never pins. Upstream fix: pass
   ``pin_memory=torch.cuda.is_available()`` (or ask the platform).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass

_MARK = "__gream_cpu_patch__"


@dataclass(frozen=True)
class Patch:
    """Replace ``module.name`` with ``make(original)``.

    ``pinned`` is the ``module:qualname`` whose source must hash to ``source_sha256``;
    ``importers`` are modules that bound ``name`` with ``from module import name``.
    """

    module: str
    name: str
    pinned: str
    source_sha256: str
    make: Callable
    importers: tuple[str, ...] = ()


def _cpu_process_group(func):
    @functools.wraps(func)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return func(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    setattr(initialize_global_process_group_ray, _MARK, True)
    return initialize_global_process_group_ray


def _unpinned_offload_policy(policy_cls):
    class CPUOffloadPolicy(policy_cls):
        """``CPUOffloadPolicy`` that never pins host memory (there is no accelerator to pin for)."""

        def __init__(self, pin_memory: bool = True, *args, **kwargs):
            super().__init__(False, *args, **kwargs)

    setattr(CPUOffloadPolicy, _MARK, True)
    CPUOffloadPolicy.__wrapped__ = policy_cls
    return CPUOffloadPolicy


PATCHES = (
    Patch(
        module="verl.utils.distributed",
        name="initialize_global_process_group_ray",
        pinned="verl.utils.distributed:initialize_global_process_group_ray",
        source_sha256="761a94d1a2e058d31a0ac231c89a142abf5daf822e333bac75e84cafcf7507ac",
        make=_cpu_process_group,
        importers=("verl.workers.engine_workers",),
    ),
    Patch(
        module="verl.workers.engine.fsdp.transformer_impl",
        name="CPUOffloadPolicy",
        pinned="verl.workers.engine.fsdp.transformer_impl:FSDPEngine._build_fsdp_module",
        source_sha256="35b7b539858443e45894da2d9675fb5a1d7b2bbb7c7c8b35605b0746d3179213",
        make=_unpinned_offload_policy,
    ),
)


def pinned_object(patch: Patch):
    """The verl object whose source a patch pins (unwrapped if already patched)."""
    module_name, qualname = patch.pinned.split(":")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return inspect.unwrap(obj)


def source_sha256(obj) -> str:
    """sha256 of an object's source text (what the pinned hashes are computed from)."""
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()


def check(patch: Patch) -> None:
    """Raise RuntimeError if verl's source is not the one this patch was written for."""
    found = source_sha256(pinned_object(patch))
    if found != patch.source_sha256:
        raise RuntimeError(
            f"gream_verl CPU patch of {patch.module}.{patch.name} was written for verl 0.9.1 "
            f"({patch.pinned} source sha256 {patch.source_sha256[:12]}), but the installed source differs "
            f"({found[:12]}); re-check gream_verl/verl_cpu/patches.py against this verl version"
        )


def apply() -> list[str]:
    """Check and apply every patch (idempotent); returns the patched names."""
    applied = []
    for patch in PATCHES:
        check(patch)
        module = importlib.import_module(patch.module)
        current = getattr(module, patch.name)
        replacement = current if getattr(current, _MARK, False) else patch.make(current)
        setattr(module, patch.name, replacement)
        for importer in patch.importers:  # modules that already hold the old binding
            if importer in sys.modules and hasattr(sys.modules[importer], patch.name):
                setattr(sys.modules[importer], patch.name, replacement)
        applied.append(f"{patch.module}.{patch.name}")
    return applied
