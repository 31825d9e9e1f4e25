"""Config checking: an unknown key or a wrong type fails before any work, naming the key and where
it came from; the packaged YAML of every stage gives exactly the keys its schema declares."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
import yaml

from gream_verl.cli import main
from gream_verl.config import ConfigError, default_config_path, load_config, to_dict
from gream_verl.configs.schema import SCHEMAS

REPO = Path(__file__).resolve().parents[1]

# stage -> (a typo of a real key, the value, the key it should suggest)
TYPOS = {
    "ablation": ("rl.stepz", "3", "rl.steps"),
    "data": ("raw.kk", "3", "raw.k"),
    "eval": ("reason.temprature", "1.0", "reason.temperature"),
    "index": ("rqkmeans.levelz", "3", "rqkmeans.levels"),
    "quickstart": ("index.rqkmeans.levelz", "3", "index.rqkmeans.levels"),
    "rl_data": ("max_trian", "5", "max_train"),
    "sft_data": ("tasks.seqrec.max_per_usr", "2", "tasks.seqrec.max_per_user"),
}
# stage -> an int key of that stage
INT_KEYS = {"ablation": "rl.steps", "data": "raw.k", "eval": "beams", "index": "rqkmeans.levels", "quickstart": "index.rqkmeans.levels",
            "rl_data": "max_history", "sft_data": "curriculum.num_epochs"}


def _nested(dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    data = {last: value}
    for key in reversed(parents):
        data = {key: data}
    return data


def test_every_stage_has_a_typo_case():
    assert set(TYPOS) == set(SCHEMAS) == set(INT_KEYS)


@pytest.mark.parametrize("stage", sorted(TYPOS))
def test_unknown_key_in_override_names_it_and_the_closest_key(stage):
    key, value, suggestion = TYPOS[stage]
    with pytest.raises(ConfigError, match=rf"bad config override '{key}={value}': unknown key '{key}'; "
                                          rf"did you mean '{suggestion}'\?"):
        load_config(stage, overrides=[f"{key}={value}"])


@pytest.mark.parametrize("stage", sorted(TYPOS))
def test_unknown_key_in_file_names_the_file(stage, tmp_path):
    key, value, suggestion = TYPOS[stage]
    path = tmp_path / f"my_{stage}.yaml"
    path.write_text(yaml.safe_dump(_nested(key, yaml.safe_load(value))))
    with pytest.raises(ConfigError, match=rf"config file {path}: unknown key '{key}'; did you mean '{suggestion}'"):
        load_config(stage, path)


@pytest.mark.parametrize("stage", sorted(INT_KEYS))
@pytest.mark.parametrize("value", ["abc", "3.7", "true", "null", "[1]"])
def test_wrong_type_names_the_key(stage, value):
    key = INT_KEYS[stage]
    with pytest.raises(ConfigError, match=re.escape(f"bad config override '{key}={value}': bad value for '{key}'")):
        load_config(stage, overrides=[f"{key}={value}"])


def test_wrong_type_in_a_file_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "index.yaml"
    path.write_text("rqkmeans:\n  levels: 3.7\n")
    with pytest.raises(ConfigError, match=rf"config file {path}: bad value for 'rqkmeans.levels': .*3.7"):
        load_config("index", path)


def test_a_file_that_is_not_a_mapping_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rqkmeans: [levels: 3\n")
    with pytest.raises(ConfigError, match=rf"config file {path} is not valid YAML"):
        load_config("index", path)
    path.write_text("- levels\n")
    with pytest.raises(ConfigError, match=rf"config file {path}: expected a mapping of keys to values, got list"):
        load_config("index", path)


def test_every_unknown_key_is_reported_at_once():
    with pytest.raises(ConfigError, match=r"(?s)'embedding.feilds'.*'embedding.fields'.*'levels'.*'rqkmeans.levels'"):
        load_config("index", overrides=["embedding.feilds=[title]", "rqkmeans.levels=2", "levels=3"])


def test_a_value_for_a_section_and_a_bare_key_are_errors():
    with pytest.raises(ConfigError, match="override 'rqkmeans=3': bad value for 'rqkmeans': this is a section"):
        load_config("index", overrides=["rqkmeans=3"])
    with pytest.raises(ConfigError, match="bad config override 'rqkmeans.levels': expected key=value"):
        load_config("index", overrides=["rqkmeans.levels"])


def test_typed_values_are_converted_and_valid_ones_pass():
    cfg = load_config("index", overrides=["rqkmeans.levels=5", "rqkmeans.tol=1", "embedding.fields=[title]",
                                          "rqkmeans.max_points_per_centroid=null"])
    assert cfg.rqkmeans.levels == 5 and isinstance(cfg.rqkmeans.tol, float) and cfg.rqkmeans.tol == 1.0
    assert list(cfg.embedding.fields) == ["title"] and cfg.rqkmeans.max_points_per_centroid is None


def test_flag_values_are_checked_too():
    with pytest.raises(ConfigError, match="command-line options: unknown key 'beamz'; did you mean 'beams'"):
        load_config("eval", beamz=3)
    with pytest.raises(ConfigError, match="command-line options: bad value for 'limit'"):
        load_config("eval", limit="many")
    assert load_config("eval", limit=7, model=None).limit == 7  # None means "flag not given"


def test_open_mappings_pass_through_and_callers_may_add_keys():
    from gream_verl.quickstart import quickstart_config

    cfg = quickstart_config(overrides=["sft.neftune_noise_alpha=5", "rl.cpu_overrides.trainer.total_epochs=1",
                                       "eval.chat_template_kwargs.foo=bar"])
    assert cfg.sft.neftune_noise_alpha == 5 and cfg.rl.cpu_overrides.trainer.total_epochs == 1
    assert cfg.eval.chat_template_kwargs.foo == "bar" and cfg.preset == "default"


def test_quickstart_overrides_and_presets_are_checked(tmp_path):
    from gream_verl.quickstart import quickstart_config

    with pytest.raises(ConfigError, match="unknown key 'rqkmeans.levelz'; did you mean 'index.rqkmeans.levels'"):
        quickstart_config(overrides=["rqkmeans.levelz=3"])
    with pytest.raises(ConfigError, match="override 'eval.limit=2.5': bad value for 'eval.limit'"):
        quickstart_config(overrides=["eval.limit=2.5"])
    path = tmp_path / "qs.yaml"
    path.write_text("presets:\n  tiny:\n    index: {rqkmeans: {levelz: 2}}\n")
    with pytest.raises(ConfigError, match=rf"config file {path}: unknown key 'presets.tiny.index.rqkmeans.levelz'"):
        quickstart_config(str(path), preset="tiny")
    path.write_text("presets:\n  tiny:\n    sft: {max_steps: 2}\n    eval: {limit: many}\n")
    with pytest.raises(ConfigError, match=rf"config file {path} \(presets.tiny\): bad value for 'eval.limit'"):
        quickstart_config(str(path), preset="default")  # every preset is checked, not only the chosen one
    path.write_text("presets:\n  tiny:\n    sft: {max_steps: 2}\n")
    assert quickstart_config(str(path), preset="tiny").sft.max_steps == 2


# --- the packaged YAML files give exactly the schema's keys ----------------------------------------


def _leaf_paths(cls: type, prefix: str = "") -> set[str]:
    """Dotted keys of a schema dataclass; open mappings (dict / Any) are leaves."""
    paths = set()
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            paths |= _leaf_paths(hint, f"{prefix}{name}.")
        else:
            paths.add(prefix + name)
    return paths


def _yaml_leaves(data: dict, prefix: str = "", open_keys: frozenset = frozenset()) -> set[str]:
    paths = set()
    for key, value in data.items():
        path = prefix + key
        if isinstance(value, dict) and path not in open_keys:
            paths |= _yaml_leaves(value, f"{path}.", open_keys)
        else:
            paths.add(path)
    return paths


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("stage", ["data", "eval", "index", "rl_data", "sft_data"])
def test_packaged_yaml_is_exactly_the_schema_defaults(stage):
    raw = yaml.safe_load(default_config_path(stage).read_text())
    schema_keys = _leaf_paths(SCHEMAS[stage])
    open_keys = frozenset(k for k in schema_keys if isinstance(_lookup(raw, k), dict))
    assert _yaml_leaves(raw, open_keys=open_keys) == schema_keys
    assert to_dict(load_config(stage)) == raw


def _lookup(data: dict, dotted: str):
    for key in dotted.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data


def test_quickstart_sections_are_the_stage_defaults_with_the_quickstart_changes():
    raw = yaml.safe_load(default_config_path("quickstart").read_text())
    cfg = to_dict(load_config("quickstart"))
    assert set(cfg) == set(raw) == {f.name for f in dataclasses.fields(SCHEMAS["quickstart"])}
    for stage in ("index", "eval", "sft_data"):
        stage_raw = yaml.safe_load(default_config_path(stage).read_text())
        assert cfg[stage] == _merge(stage_raw, raw[stage])
    for section in ("data", "baselines", "model", "sft", "rl", "presets", "seed", "dataset"):
        assert cfg[section] == raw[section]


def test_eval_has_the_engine_key():
    assert load_config("eval").engine == "auto"
    assert load_config("eval", overrides=["engine=hf"]).engine == "hf"


def test_sections_feeding_runtime_dataclasses_name_only_their_fields():
    """The quickstart's sasrec section, sft_data's curriculum and teacher sections are passed as
    keyword arguments to these dataclasses: a key there that the dataclass lacks would crash late."""
    from gream_verl.baselines import SASRecConfig
    from gream_verl.configs import schema
    from gream_verl.tasks.batch_curriculum import CurriculumConfig
    from gream_verl.teacher import TeacherConfig

    def names(cls):
        return {f.name for f in dataclasses.fields(cls)}

    assert names(schema.SASRecSection) <= names(SASRecConfig)
    assert names(schema.CurriculumSection) - {"enabled"} <= names(CurriculumConfig)
    assert names(schema.TeacherSection) - {"mode"} <= names(TeacherConfig)
    assert names(schema.EnrichConfig) - {"fields", "max_field_chars", "max_words"} <= names(TeacherConfig)


# --- every command rejects a typo before doing work --------------------------------------------------


COMMANDS = {  # stage -> argv of a command reading it; the paths do not exist, so work would fail differently
    "data": ["data", "stats", "{tmp}/missing"],
    "eval": ["eval", "direct", "--model", "{tmp}/m", "--data", "{tmp}/d", "--index", "{tmp}/i.json"],
    "index": ["index", "build", "--data", "{tmp}/d", "--out", "{tmp}/out/x.index.json"],
    "quickstart": ["quickstart", "--data-dir", "{tmp}"],
    "rl_data": ["rl", "build", "--data", "{tmp}/d", "--index", "{tmp}/i.json", "--out", "{tmp}/out"],
    "sft_data": ["sft", "build", "--data", "{tmp}/d", "--index", "{tmp}/i.json", "--out", "{tmp}/out"],
}


@pytest.mark.parametrize("stage", sorted(COMMANDS))
def test_every_command_rejects_a_typo_before_work(stage, tmp_path, capsys, monkeypatch):
    import gream_verl.quickstart

    monkeypatch.setattr(gream_verl.quickstart, "run_quickstart", lambda *a, **k: pytest.fail("the pipeline ran"))
    monkeypatch.chdir(tmp_path)
    key, value, _ = TYPOS[stage]
    if stage == "quickstart":
        key = key.removeprefix("index.")  # the typo of the issue: a stage key without its section
    argv = [a.format(tmp=tmp_path) for a in COMMANDS[stage]] + [f"{key}={value}"]
    assert main(argv) == 1  # the first call imports the command's modules
    start = time.perf_counter()
    assert main(argv) == 1
    assert time.perf_counter() - start < 1.0
    assert f"unknown key '{key}'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_real_cli_quickstart_typo_exits_nonzero_and_writes_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "gream_verl.cli", "quickstart", "--data-dir", str(tmp_path),
                           "rqkmeans.levelz=3"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "unknown key 'rqkmeans.levelz'; did you mean 'index.rqkmeans.levels'?" in done.stderr
    assert list(tmp_path.iterdir()) == []
