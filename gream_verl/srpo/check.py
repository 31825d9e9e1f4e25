"""What verl sees of gream after ``import verl``, probed in a fresh interpreter.

verl loads ``verl.plugins`` entry points at import and swallows their errors (debug log only), so
the only trustworthy check is a new process that imports verl and reads verl's own registries.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, sys
import verl
from verl.trainer.ppo import core_algos
out = {"verl_version": getattr(verl, "__version__", "?"), "python": sys.executable}
fn = core_algos.ADV_ESTIMATOR_REGISTRY.get("srpo")
out["adv_estimator_srpo"] = f"{fn.__module__}.{fn.__qualname__}" if fn else None
try:
    from verl.experimental.reward_loop.reward_manager import registry
    cls = registry.REWARD_MANAGER.get("srpo")
    out["reward_manager_srpo"] = f"{cls.__module__}.{cls.__qualname__}" if cls else None
except Exception as e:  # noqa: BLE001
    out["reward_manager_srpo"] = None
    out["reward_manager_error"] = repr(e)
plugin = sys.modules.get("gream_verl.verl_plugin")
out["plugin_imported_by_verl"] = plugin is not None
out["plugin_loaded"] = list(getattr(plugin, "LOADED", []))
out["plugin_errors"] = dict(getattr(plugin, "ERRORS", {}))
print("GREAM_VERL_CHECK " + json.dumps(out))
"""

REQUIRED_PART = "gream_verl.srpo.register"


def probe(python: str | None = None, timeout: float = 600) -> dict:
    """Run the probe in a fresh ``python`` (default: this interpreter) and return its findings."""
    proc = subprocess.run([python or sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("GREAM_VERL_CHECK "):
            return json.loads(line[len("GREAM_VERL_CHECK "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
    raise RuntimeError("`import verl` failed in a fresh interpreter:\n" + "\n".join(tail))


def problems(found: dict) -> list[str]:
    """Everything that would stop ``algorithm.adv_estimator=srpo`` / ``reward_manager.name=srpo``."""
    out = []
    if not found.get("plugin_imported_by_verl"):
        out.append("verl did not import gream_verl.verl_plugin: is gream-verl installed (pip install -e .) in this "
                   "environment, and VERL_USE_EXTERNAL_PLUGINS not 'none' / not excluding 'gream'?")
    if REQUIRED_PART not in found.get("plugin_loaded", []):
        out.append(f"{REQUIRED_PART} did not load")
    for part, trace in found.get("plugin_errors", {}).items():
        out.append(f"{part} failed: {trace.strip().splitlines()[-1] if trace.strip() else trace}")
    if not found.get("adv_estimator_srpo"):
        out.append("advantage estimator 'srpo' is not in verl's registry")
    if not found.get("reward_manager_srpo"):
        out.append("reward manager 'srpo' is not in verl's registry")
    return out
