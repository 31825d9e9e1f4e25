"""A CPU platform for verl's platform registry (``VERL_PLATFORM=cpu``).

verl 0.9.1 resolves the device name, the ``torch.<device>`` module, the process-group backend and
the Ray resource of every worker through ``verl.plugin.platform.get_platform()``. Registering this
class as ``cpu`` and selecting it with ``VERL_PLATFORM=cpu`` makes all of these CPU/gloo.

Ray scheduling: verl's resource pools count and request ``GPU`` bundles
(``ResourcePoolManager._check_resource_available`` only reads the ``GPU``/``NPU`` keys), so on a
CPU machine the recipe gives Ray *logical* GPU slots (``ray_kwargs.ray_init.num_gpus``). They are
only scheduling tokens: no process here ever touches CUDA.
"""

from __future__ import annotations

import os
import types
from contextlib import contextmanager
from typing import Any

import torch

PLATFORM_NAME = "cpu"


def _memory_info() -> tuple[int, int]:
    """(free, total) bytes of host memory, the CPU counterpart of ``torch.cuda.mem_get_info``."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):
        return 0, 0


def _noop(*_args, **_kwargs) -> None:
    return None


def _zero(*_args, **_kwargs) -> int:
    return 0


def make_device_module() -> types.ModuleType:
    """``torch.cpu`` plus the ``torch.cuda`` calls verl makes on ``get_torch_device()`` that
    ``torch.cpu`` lacks (cache and memory queries become no-ops / host numbers)."""
    module = types.ModuleType("gream_verl.verl_cpu.device")
    for name in dir(torch.cpu):
        if not name.startswith("__"):
            setattr(module, name, getattr(torch.cpu, name))
    module.empty_cache = _noop
    module.ipc_collect = _noop
    module.set_per_process_memory_fraction = _noop
    module.reset_peak_memory_stats = _noop
    module.memory_allocated = _zero
    module.memory_reserved = _zero
    module.max_memory_allocated = _zero
    module.max_memory_reserved = _zero
    module.mem_get_info = lambda *_a, **_k: _memory_info()
    module.get_device_name = lambda *_a, **_k: "cpu"
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    module.get_rng_state = lambda *_a, **_k: torch.get_rng_state()
    module.set_rng_state = lambda state, *_a, **_k: torch.set_rng_state(state)
    module.current_device = lambda: torch.device("cpu")
    return module


def platform_class():
    """Build the ``PlatformBase`` subclass (imported lazily so this module loads without verl)."""
    from verl.plugin.platform import PlatformBase

    class PlatformCPU(PlatformBase):
        """Host CPU as a verl device: gloo collectives, no IPC, profiling no-ops."""

        _device_module = make_device_module()

        @property
        def device_name(self) -> str:
            return "cpu"

        @property
        def vendor_name(self) -> str:
            return "cpu"

        @property
        def device_module(self) -> types.ModuleType:
            return self._device_module

        def is_available(self) -> bool:
            return True

        def is_platform_available(self, use_smi_check: bool = False) -> bool:
            # Never auto-detected: a CPU-only host keeps verl's own fallback unless the user
            # asks for this platform explicitly with VERL_PLATFORM=cpu.
            return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME

        def current_device(self) -> torch.device:
            # verl moves tensors with ``.to(get_device_id())``; an int would mean cuda:<int>.
            return torch.device("cpu")

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index: int) -> None:
            return None

        def synchronize(self, device_index: int | None = None) -> None:
            return None

        def manual_seed(self, seed: int) -> None:
            torch.manual_seed(seed)

        def manual_seed_all(self, seed: int) -> None:
            torch.manual_seed(seed)

        def set_allocator_settings(self, settings: str) -> None:
            return None

        def empty_cache(self) -> None:
            return None

        def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            return "CUDA_VISIBLE_DEVICES"

        @contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            return None

        def profiler_stop(self) -> None:
            return None

        def ray_resource_name(self) -> str:
            return "GPU"  # logical slots, see the module docstring

        def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
            return {"num_gpus": num_gpus}

        def ray_noset_envvars(self) -> list[str]:
            return []

        def is_ipc_supported(self) -> bool:
            return False

        def cudart(self) -> Any:
            return None

    return PlatformCPU
