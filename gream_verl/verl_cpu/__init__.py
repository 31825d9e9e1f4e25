"""Run verl 0.9.1's real PPO/SRPO trainer on a CPU-only machine, through verl's plugin registries.

* ``platform``: a ``cpu`` entry for ``verl.plugin.platform.PlatformRegistry`` (gloo, host memory);
* ``patches``: the one verl function that registries cannot reach, hash-pinned;
* ``generate`` / ``rollout``: a transformers rollout server for verl's rollout registries;
* ``register``: wires the above in when verl imports its plugins.

Select it with ``VERL_PLATFORM=cpu`` and ``actor_rollout_ref.rollout.name=hf`` (see
``gream_verl/verl_cpu/cpu_tiny.sh``, run from a checkout as ``recipes/srpo/cpu_tiny.sh``).
"""

SUPPORTED_VERL = "0.9.1"
