"""Test-side child of ``run_sft``: trains exactly like ``python -m gream_verl.tasks.sft_train
RESOLVED.yaml`` and appends each training forward's ``input_ids`` (padding removed) to a
JSON-lines file, which is how the tests see the order in which samples reach the model.

The tests put it in front of ``run_sft``'s command by patching ``sft_train.launcher``, so the
child runs ``python tests/sft/record_inputs.py --record-inputs FILE -m gream_verl.tasks.sft_train
RESOLVED.yaml``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SFT_MODULE = "gream_verl.tasks.sft_train"


class InputRecorder:
    """Forward pre-hook: appends the ``input_ids`` rows of each training forward to ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __call__(self, module, args, kwargs) -> None:
        if not module.training:
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            return
        mask = kwargs.get("attention_mask")
        with open(self.path, "a", encoding="utf-8") as f:
            for k, row in enumerate(input_ids.tolist()):
                if mask is not None:
                    row = [t for t, m in zip(row, mask[k].tolist(), strict=True) if m]
                f.write(json.dumps(row) + "\n")


def recorder_callback(path: str | Path):
    from transformers import TrainerCallback

    class RecordInputsCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if model is not None:
                model.register_forward_pre_hook(InputRecorder(path), with_kwargs=True)

    return RecordInputsCallback()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record-inputs", required=True, help="JSON-lines file the input_ids are appended to")
    parser.add_argument("-m", dest="module", required=True, help=f"the module run_sft starts ({SFT_MODULE})")
    parser.add_argument("config", help="resolved SFT config YAML")
    ns = parser.parse_args(argv)
    if ns.module != SFT_MODULE:
        parser.error(f"-m {ns.module}: expected {SFT_MODULE}")
    from gream_verl.tasks.sft_train import train

    train(ns.config, callbacks=[recorder_callback(ns.record_inputs)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
