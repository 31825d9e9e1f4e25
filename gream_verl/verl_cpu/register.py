"""Registrations made when verl imports its plugins (``gream_verl.verl_plugin``).

Always (cheap, inert until asked for): the ``hf`` rollout in ``RolloutReplicaRegistry`` and
``_ROLLOUT_REGISTRY``, and the ``cpu`` platform in ``PlatformRegistry``.
Only with ``VERL_PLATFORM=cpu``: the FSDP/FSDP2 engines registered for device ``cpu`` and the
patches of ``gream_verl.verl_cpu.patches``.
"""

from __future__ import annotations

import os

import verl

from gream_verl.verl_cpu import SUPPORTED_VERL
from gream_verl.verl_cpu.platform import PLATFORM_NAME, platform_class
from gream_verl.verl_cpu.rollout import ROLLOUT_NAME, load_replica_class

STATE: dict[str, object] = {"selected": False, "patched": [], "engines": []}


def cpu_selected() -> bool:
    """True when the user picked the CPU platform (``VERL_PLATFORM=cpu``)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME


def check_verl_version(version: str | None = None) -> None:
    version = version or getattr(verl, "__version__", "unknown")
    if version != SUPPORTED_VERL:
        raise RuntimeError(
            f"gream_verl.verl_cpu is written against verl {SUPPORTED_VERL} exactly, found verl {version}; "
            f"install verl=={SUPPORTED_VERL} or update gream_verl/verl_cpu for this version"
        )


def register_rollout() -> None:
    from verl.workers.rollout import base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register(ROLLOUT_NAME, load_replica_class)
    base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = "gream_verl.verl_cpu.rollout.HFServerAdapter"


def register_platform() -> None:
    from verl.plugin.platform import PlatformRegistry

    if PlatformRegistry.get(PLATFORM_NAME) is None:
        PlatformRegistry.register(PLATFORM_NAME)(platform_class())


def register_cpu_engines() -> list[str]:
    """Make verl's FSDP language/value-model engines selectable on device ``cpu``."""
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    done = []
    for model_type, engine in (("language_model", FSDPEngineWithLMHead), ("value_model", FSDPEngineWithValueHead)):
        for backend in ("fsdp", "fsdp2"):
            if PLATFORM_NAME not in EngineRegistry._engines.get(model_type, {}).get(backend, {}):
                EngineRegistry.register(model_type=model_type, backend=backend, device=PLATFORM_NAME)(engine)
            done.append(f"{model_type}/{backend}")
    return done


def _refuse_cpu_platform(error: RuntimeError) -> None:
    """verl swallows plugin errors; with ``VERL_PLATFORM=cpu`` on another verl version, make the
    platform lookup itself raise the version error instead of verl's bare "Unknown platform 'cpu'"."""
    try:
        from verl.plugin.platform import PlatformBase, PlatformRegistry
    except ImportError:
        return

    class UnsupportedVerl(PlatformBase):
        def __new__(cls, *args, **kwargs):
            raise error

    PlatformRegistry._platforms[PLATFORM_NAME] = UnsupportedVerl


def register() -> None:
    try:
        check_verl_version()
    except RuntimeError as error:
        if cpu_selected():
            _refuse_cpu_platform(error)
        raise
    register_platform()
    register_rollout()
    if cpu_selected():
        from gream_verl.verl_cpu import patches

        STATE["selected"] = True
        STATE["patched"] = patches.apply()
        STATE["engines"] = register_cpu_engines()


register()
