"""Every SRPO recipe composes with verl 0.9.1's own ppo_trainer config and passes its validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

verl = pytest.importorskip("verl")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import ConfigCompositionException  # noqa: E402
from verl.trainer.ppo.utils import need_critic, need_reference_policy  # noqa: E402
from verl.utils.config import omega_conf_to_dataclass, validate_config  # noqa: E402

from gream_verl.srpo.advantage import srpo_config  # noqa: E402
from gream_verl.srpo.recipes import RECIPES_FILE, recipe_names, recipe_overrides  # noqa: E402

VERL_CONFIG_DIR = Path(verl.__file__).parent / "trainer" / "config"
REPO = Path(__file__).resolve().parents[2]


def check(overrides: list[str]):
    """What ``python -m verl.trainer.main_ppo`` does with the overrides before starting Ray, plus the
    conversions its workers do and the lookups of our registered names."""
    with initialize_config_dir(config_dir=str(VERL_CONFIG_DIR), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    srpo_config(cfg.algorithm)  # unknown +algorithm.srpo keys raise
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn
    from verl.trainer.ppo.reward import resolve_reward_manager_cls
    from verl.utils.dataset.rl_dataset import get_dataset_class

    get_adv_estimator_fn(cfg.algorithm.adv_estimator)
    resolve_reward_manager_cls(cfg)
    get_dataset_class(cfg.data)
    return cfg


def test_recipes_exist():
    assert {"instruments", "beauty", "sports", "gsm8k", "instruments_curriculum"} <= set(recipe_names())
    for name in ("instruments", "beauty", "sports", "gsm8k"):
        assert (REPO / "recipes" / "srpo" / f"{name}.sh").is_file()


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_composes_and_validates(name):
    cfg = check(recipe_overrides(name, env={}))
    assert cfg.algorithm.adv_estimator == "srpo"
    assert cfg.algorithm.use_kl_in_reward is False and cfg.actor_rollout_ref.actor.use_kl_loss is True
    if name != "gsm8k":  # the paper's hyperparameters
        a, r = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
        assert (cfg.data.train_batch_size, a.ppo_mini_batch_size, r.n, r.temperature) == (256, 128, 10, 0.5)
        assert (a.optim.lr, a.optim.weight_decay, a.kl_loss_coef, cfg.trainer.n_gpus_per_node) == (4e-6, 0.01, 0.001, 8)
        assert cfg.reward.reward_manager.name == "srpo" and cfg.algorithm.filter_groups.enable
        assert cfg.data.train_files == f"data/rl/{cfg.trainer.experiment_name.split('_')[1].capitalize()}/train.parquet"
    else:
        assert cfg.reward.reward_manager.name == "naive"  # verl's own GSM8K 0/1 reward
    if name.endswith("curriculum"):
        assert cfg.data.shuffle is False and cfg.data.custom_cls.name == "CurriculumRLHFDataset"


def test_environment_fills_placeholders():
    ov = recipe_overrides("beauty", env={"GREAM_MODEL_PATH": "/m", "GREAM_ROLLOUT": "sglang", "GREAM_N_GPUS": "4"})
    assert "actor_rollout_ref.model.path=/m" in ov and "actor_rollout_ref.rollout.name=sglang" in ov
    assert "trainer.n_gpus_per_node=4" in ov
    with pytest.raises(KeyError, match="unknown recipe"):
        recipe_overrides("nope")


@pytest.mark.parametrize(
    "typo",
    [
        "actor_rollout_ref.actor.optim.lrr=4e-6",  # misspelt verl key
        "algorithm.adv_estimater=srpo",
        "reward.reward_manager.nme=srpo",
    ],
)
def test_a_typo_in_a_verl_key_fails(typo):
    good = recipe_overrides("instruments", env={})
    with pytest.raises(ConfigCompositionException, match=typo.split("=")[0].rsplit(".", 1)[-1]):
        check([*good, typo])


def test_a_typo_in_an_srpo_key_or_name_fails():
    good = recipe_overrides("instruments", env={})
    with pytest.raises(ValueError, match="unknown algorithm.srpo"):
        check([*good, "+algorithm.srpo.bonus_wieght=2.0"])
    with pytest.raises(ValueError, match="Unknown advantage estimator"):
        check([*good, "algorithm.adv_estimator=srpoo"])
    with pytest.raises(Exception, match="srpoo"):
        check([*good, "reward.reward_manager.name=srpoo"])


def test_run_sh_passes_the_overrides(tmp_path):
    fake = tmp_path / "python"
    real = sys.executable
    # a stand-in interpreter: run our module for real, echo the verl command instead of training
    fake.write_text(f'#!/bin/sh\nif [ "$2" = verl.trainer.main_ppo ]; then shift 2; printf "%s\\n" "$@"; '
                    f'else exec {real} "$@"; fi\n')
    fake.chmod(0o755)
    import gream_verl

    env = {"PYTHON": str(fake), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(gream_verl.__file__).parents[1])}
    out = subprocess.run([str(REPO / "recipes" / "srpo" / "gsm8k.sh"), "trainer.total_epochs=1"], capture_output=True,
                         text=True, env=env, check=True).stdout.splitlines()  # the gream_verl under test
    assert out == [*recipe_overrides("gsm8k", env={}), "trainer.total_epochs=1"]
    assert RECIPES_FILE.is_file()
