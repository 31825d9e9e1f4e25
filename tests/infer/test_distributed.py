"""torchrun data parallelism gives the same predictions and metrics as one process."""

import json
import os
import socket
import subprocess
import sys

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path, tiny_data_dir, tiny_model_dir):
    common = ["--model", str(tiny_model_dir), "--data", str(tiny_data_dir), "--index", str(tiny_data_dir / "Tiny.index.json"),
              "--beams", "6", "--batch-size", "1", "--limit", "7"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for name, launcher in (
        ("one", [sys.executable, "-m", "gream_verl.infer.direct"]),
        ("two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                 "-m", "gream_verl.infer.direct"]),
    ):  # fmt: skip
        out, preds = tmp_path / f"{name}.json", tmp_path / f"{name}.jsonl"
        proc = subprocess.run(
            [*launcher, *common, "--out", str(out), "--save-predictions", str(preds), "--json", "progress=false"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = (json.loads(out.read_text()), [json.loads(x) for x in preds.read_text().splitlines()])
    (res1, pred1), (res2, pred2) = runs["one"], runs["two"]
    assert res2["settings"]["world_size"] == 2 and res1["settings"]["world_size"] == 1
    assert res1["metrics"] == res2["metrics"]
    assert [p["user"] for p in pred1] == [p["user"] for p in pred2]
    assert [p["predictions"] for p in pred1] == [p["predictions"] for p in pred2]
    for a, b in zip(pred1, pred2, strict=True):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
