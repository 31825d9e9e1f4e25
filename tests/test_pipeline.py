"""The stage runner: skip when current, re-run on config change, never a partial artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gream_verl.pipeline import (
    CONFIG_FILE,
    DONE_MARKER,
    Pipeline,
    code_fingerprint,
    config_hash,
    package_digest,
)


def _writer(calls: list, text: str = "x"):
    def run(out):
        calls.append(out)
        (out / "artifact.txt").write_text(text)
        return {"n": len(calls)}

    return run


def test_config_hash_ignores_key_order_and_sees_values():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert config_hash({"a": 1}, ["u1"]) != config_hash({"a": 1}, ["u2"])
    assert config_hash({"a": 1}, code="0.1.0+aa") != config_hash({"a": 1}, code="0.1.0+bb")


def test_stage_is_skipped_when_current(tmp_path):
    calls: list = []
    first = Pipeline(tmp_path, echo=lambda s: None).stage("s", {"k": 1}, _writer(calls))
    assert not first.skipped and first.summary == {"n": 1}
    assert (tmp_path / "s" / "artifact.txt").read_text() == "x"
    assert json.loads((tmp_path / "s" / CONFIG_FILE).read_text()) == {"k": 1}
    second = Pipeline(tmp_path, echo=lambda s: None).stage("s", {"k": 1}, _writer(calls))
    assert second.skipped and len(calls) == 1
    assert second.summary == {"n": 1}  # the summary comes back from the marker


def test_stage_reruns_when_config_or_upstream_changes(tmp_path):
    calls: list = []
    p = Pipeline(tmp_path, echo=lambda s: None)
    p.stage("a", {"k": 1}, _writer(calls, "a1"))
    p.stage("b", {"j": 1}, _writer(calls, "b1"), after=["a"])
    assert len(calls) == 2
    p = Pipeline(tmp_path, echo=lambda s: None)
    p.stage("a", {"k": 2}, _writer(calls, "a2"))
    p.stage("b", {"j": 1}, _writer(calls, "b2"), after=["a"])  # same config, upstream changed
    assert len(calls) == 4
    assert (tmp_path / "b" / "artifact.txt").read_text() == "b2"
    assert not p.results["b"].skipped


def test_no_partial_artifact_after_exception(tmp_path):
    p = Pipeline(tmp_path, echo=lambda s: None)
    p.stage("s", {"k": 1}, _writer([], "good"))

    def boom(out):
        (out / "artifact.txt").write_text("half")
        raise RuntimeError("stage failed")

    with pytest.raises(RuntimeError, match="stage failed"):
        Pipeline(tmp_path, echo=lambda s: None).stage("s", {"k": 2}, boom)
    # the old, complete artifact is untouched and no temp folder is left behind
    assert (tmp_path / "s" / "artifact.txt").read_text() == "good"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s"]
    with pytest.raises(KeyboardInterrupt, match="^$"):
        Pipeline(tmp_path, echo=lambda s: None).stage("t", {}, lambda out: (_ for _ in ()).throw(KeyboardInterrupt))
    assert not (tmp_path / "t").exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s"]


def test_stage_without_marker_reruns(tmp_path):
    calls: list = []
    Pipeline(tmp_path, echo=lambda s: None).stage("s", {"k": 1}, _writer(calls))
    (tmp_path / "s" / DONE_MARKER).unlink()
    Pipeline(tmp_path, echo=lambda s: None).stage("s", {"k": 1}, _writer(calls))
    assert len(calls) == 2


def test_after_unknown_stage_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="missing"):
        Pipeline(tmp_path, echo=lambda s: None).stage("b", {}, _writer([]), after=["missing"])


def test_stage_reruns_when_the_code_changes(tmp_path):
    """An upgraded checkout (other code fingerprint) recomputes the stage and everything after it."""
    calls: list = []
    lines: list = []
    old = Pipeline(tmp_path, echo=lines.append, code="0.1.0+aaaa")
    old.stage("a", {"k": 1}, _writer(calls, "old"))
    old.stage("b", {"k": 1}, _writer(calls, "old"), after=["a"])
    assert json.loads((tmp_path / "a" / DONE_MARKER).read_text())["code"] == "0.1.0+aaaa"
    new = Pipeline(tmp_path, echo=lines.append, code="0.1.0+bbbb")
    new.stage("a", {"k": 1}, _writer(calls, "new"))
    new.stage("b", {"k": 1}, _writer(calls, "new"), after=["a"])
    assert len(calls) == 4 and (tmp_path / "b" / "artifact.txt").read_text() == "new"
    assert "[1] a: running (code changed)" in lines
    same = Pipeline(tmp_path, echo=lines.append, code="0.1.0+bbbb")
    assert same.stage("a", {"k": 1}, _writer(calls)).skipped and len(calls) == 4


def test_package_digest_sees_every_source_file_but_not_bytecode(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub" / "__pycache__").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.yaml").write_text("k: 1\n")
    first = package_digest(pkg)
    (pkg / "sub" / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"\0")
    assert package_digest(pkg) == first
    (pkg / "sub" / "b.yaml").write_text("k: 2\n")
    assert package_digest(pkg) != first
    (pkg / "sub" / "b.yaml").write_text("k: 1\n")
    (pkg / "sub" / "b.yaml").rename(pkg / "b.yaml")  # same bytes, other place
    assert package_digest(pkg) != first


def test_default_fingerprint_is_the_version_and_the_package_digest():
    import gream_verl

    version, digest = code_fingerprint().split("+")
    assert version == gream_verl.__version__
    assert digest == package_digest(Path(gream_verl.__file__).parent) and len(digest) == 16
    assert Pipeline(".", echo=lambda s: None).code == code_fingerprint()
