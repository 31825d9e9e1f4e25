"""The stage runner: skip when current, re-run on config change, never a partial artifact."""

from __future__ import annotations

import json

import pytest

from gream_verl.pipeline import CONFIG_FILE, DONE_MARKER, Pipeline, config_hash


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
    with pytest.raises(KeyboardInterrupt):
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
