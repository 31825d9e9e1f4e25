"""Entry point of the ``verl.plugins`` group (see pyproject.toml).

``import verl`` imports this module in the driver and in every Ray worker, so registrations made
here exist wherever verl looks them up. verl swallows plugin import errors (it logs them at debug
level), so each part records its outcome in ``LOADED`` / ``ERRORS`` for ``gream verl-check``.
"""

from __future__ import annotations

import importlib
import traceback

PARTS = (
    "gream_verl.srpo.register",  # srpo advantage estimator, reward manager, dynamic sampling hooks
    "gream_verl.verl_cpu.register",  # CPU platform + transformers rollout (inert unless selected)
)

LOADED: list[str] = []
ERRORS: dict[str, str] = {}

for _name in PARTS:
    try:
        importlib.import_module(_name)
        LOADED.append(_name)
    except ModuleNotFoundError as _e:
        if not (_e.name and _name.startswith(_e.name)):  # a missing part is not an error
            ERRORS[_name] = traceback.format_exc()
    except Exception:  # noqa: BLE001  recorded and reported by `gream verl-check`
        ERRORS[_name] = traceback.format_exc()
