"""CPU platform, registrations and the hash-pinned patches (gream_verl.verl_cpu)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("verl")

from gream_verl.verl_cpu import SUPPORTED_VERL, patches  # noqa: E402
from gream_verl.verl_cpu.platform import make_device_module, platform_class  # noqa: E402


def test_installed_verl_is_the_supported_one():
    import verl

    assert verl.__version__ == SUPPORTED_VERL


def test_other_verl_versions_are_refused_with_a_clear_message():
    from gream_verl.verl_cpu.register import check_verl_version

    with pytest.raises(RuntimeError, match=r"verl 0\.9\.1 exactly, found verl 0\.9\.2"):
        check_verl_version("0.9.2")
    check_verl_version(SUPPORTED_VERL)


@pytest.mark.parametrize("patch", patches.PATCHES, ids=lambda p: f"{p.module}.{p.name}")
def test_patched_verl_source_is_unchanged(patch):
    """Fails when verl changes a function a CPU patch depends on: re-check the patch, then re-pin."""
    assert patches.source_sha256(patches.pinned_object(patch)) == patch.source_sha256, patch.pinned


def test_a_changed_verl_source_is_refused():
    stale = dataclasses.replace(patches.PATCHES[0], source_sha256="0" * 64)
    with pytest.raises(RuntimeError, match="written for verl 0.9.1"):
        patches.check(stale)


def test_process_group_wrapper_asks_for_gloo_only():
    seen = {}

    def original(timeout_second=None, backend=None):
        seen.update(timeout=timeout_second, backend=backend)

    wrapped = patches._cpu_process_group(original)
    wrapped(timeout_second=None)
    assert seen == {"timeout": None, "backend": "cpu:gloo"}
    wrapped(backend="gloo")
    assert seen["backend"] == "gloo"


def test_offload_policy_never_pins_memory():
    from torch.distributed.fsdp import CPUOffloadPolicy

    policy = patches._unpinned_offload_policy(CPUOffloadPolicy)(pin_memory=True)
    assert isinstance(policy, CPUOffloadPolicy)
    assert policy.pin_memory is False


def test_platform_is_cpu_gloo_and_never_auto_detected(monkeypatch):
    platform = platform_class()()
    assert (platform.device_name, platform.communication_backend_name()) == ("cpu", "gloo")
    assert torch.ones(2).to(platform.current_device()).device.type == "cpu"
    assert platform.ray_resource_options(0.5) == {"num_gpus": 0.5}
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    assert not platform.is_platform_available(use_smi_check=True)
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    assert platform.is_platform_available(use_smi_check=True)


def test_device_module_answers_the_cuda_calls_verl_makes():
    module = make_device_module()
    for name in ("empty_cache", "synchronize", "ipc_collect", "set_per_process_memory_fraction"):
        assert getattr(module, name)() is None
    free, total = module.mem_get_info()
    assert 0 <= free <= total
    assert module.memory_allocated() == 0 and module.max_memory_reserved() == 0
    state = module.get_rng_state()
    first = torch.rand(3)
    module.set_rng_state(state)
    assert torch.equal(first, torch.rand(3))


_PROBE = r"""
import json, verl
from gream_verl import verl_plugin
from gream_verl.verl_cpu.register import STATE
from verl.utils.device import get_device_name, get_nccl_backend
from verl.workers.engine.base import EngineRegistry
from verl.workers.rollout.base import get_rollout_class
from verl.workers.rollout.replica import RolloutReplicaRegistry
import verl.utils.distributed as dist
print("PROBE" + json.dumps({
    "errors": sorted(verl_plugin.ERRORS), "state": STATE,
    "device": get_device_name(), "backend": get_nccl_backend(),
    "engine": EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__,
    "adapter": get_rollout_class("hf").__name__,
    "replica": RolloutReplicaRegistry.get("hf").__name__,
    "pg_patched": hasattr(dist.initialize_global_process_group_ray, "__gream_cpu_patch__"),
}))
"""


def _probe(platform: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    if platform:
        env["VERL_PLATFORM"] = platform
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in out.stdout.splitlines() if line.startswith("PROBE")]
    assert lines, out.stderr[-3000:]
    return json.loads(lines[-1][len("PROBE"):])


@pytest.mark.slow  # a fresh interpreter importing verl
def test_verl_selects_cpu_platform_engine_rollout_and_patches_in_a_fresh_process():
    found = _probe("cpu")
    assert found["errors"] == []
    assert (found["device"], found["backend"]) == ("cpu", "gloo")
    assert found["engine"] == "FSDPEngineWithLMHead"
    assert (found["adapter"], found["replica"]) == ("HFServerAdapter", "HFReplica")
    assert found["pg_patched"] and found["state"]["selected"]
    assert len(found["state"]["patched"]) == len(patches.PATCHES)


@pytest.mark.slow  # a fresh interpreter importing verl
def test_nothing_is_patched_unless_the_cpu_platform_is_selected():
    found = _probe(None)
    assert found["errors"] == []
    assert not found["pg_patched"] and not found["state"]["selected"]
    assert found["adapter"] == "HFServerAdapter"  # the rollout itself is registered, inert


def test_selecting_cpu_on_another_verl_raises_the_version_error(monkeypatch):
    from verl.plugin.platform import PlatformRegistry

    from gream_verl.verl_cpu.register import _refuse_cpu_platform

    monkeypatch.setattr(PlatformRegistry, "_platforms", dict(PlatformRegistry._platforms))
    _refuse_cpu_platform(RuntimeError("written against verl 0.9.1 exactly, found verl 9.9"))
    with pytest.raises(RuntimeError, match="found verl 9.9"):
        PlatformRegistry.get("cpu")()
