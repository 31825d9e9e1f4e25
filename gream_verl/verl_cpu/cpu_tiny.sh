#!/usr/bin/env bash
# SRPO through verl's real trainer (python -m verl.trainer.main_ppo) on a CPU-only machine:
# a tiny vocabulary-extended Qwen3, a few Office RL rows, 2 training steps, about 5 minutes on 2 cores.
#
#   recipes/srpo/cpu_tiny.sh [key=value ...]   (or bash gream_verl/verl_cpu/cpu_tiny.sh) extra Hydra overrides are appended (they win)
#
# Environment:
#   GREAM_CPU_WORK  work folder (default runs/srpo_cpu_tiny): setup/ (model + parquet, made once by
#                   python -m gream_verl.verl_cpu.tiny_setup), metrics.jsonl, rollouts/, ckpt/
#   GREAM_DATA      LC-Rec dataset folder (default $GREAM_DATA_DIR/Office; needed for the tiny setup only)
#   GREAM_INDEX     item index JSON (default: the dataset folder's *.index*.json)
#   GREAM_MODEL_PATH + GREAM_RL_DATA   use this (SFT) model and this folder's train/val.parquet
#                   (from `gream rl build`) instead of the tiny setup, e.g. in the quickstart
#   GREAM_ANSWER    rollout answer format: direct (a valid item index, the default when the index is
#                   known), reason (free text, <answer>, a valid index, </answer>) or free (no constraint;
#                   the default when GREAM_MODEL_PATH is given without GREAM_INDEX)
#   GREAM_MAX_GEN_ROUNDS  dynamic sampling's refill cap per step (algorithm.filter_groups.max_num_gen_batches,
#                   default 4; 0 = no cap): a flat policy (every group zero-variance) cannot refill forever
#   PYTHON          interpreter with gream_verl and verl 0.9.1 (default: python)
#
# What makes verl run on CPU (all from gream_verl.verl_cpu, loaded by the verl.plugins entry point):
#   VERL_PLATFORM=cpu                    CPU platform (gloo, host memory) + FSDP engines for device cpu
#   actor_rollout_ref.rollout.name=hf    transformers rollout server instead of vLLM/SGLang; engine_kwargs.hf
#                                        picks its answer format and item index
#   trainer.v1.sampler.custom_sampler    CappedReplayBuffer: verl's sync buffer + the refill cap
#   ray_init.num_gpus=1                  logical GPU slot: verl's resource pools only count GPU/NPU
#   ray_init.num_cpus=8, 1 TQ storage    enough logical CPUs for TransferQueue's actors on 2 cores
set -euo pipefail
PYTHON=${PYTHON:-python}
WORK=${GREAM_CPU_WORK:-runs/srpo_cpu_tiny}
DATA=${GREAM_DATA:-${GREAM_DATA_DIR:+$GREAM_DATA_DIR/Office}}
SETUP=$WORK/setup
mkdir -p "$WORK"

if [ -n "${GREAM_MODEL_PATH:-}" ] && [ -n "${GREAM_RL_DATA:-}" ]; then
    MODEL=$GREAM_MODEL_PATH
    RL_DATA=$GREAM_RL_DATA
    INDEX=${GREAM_INDEX:-}
else
    if [ ! -f "$SETUP/setup.json" ]; then
        index_args=()
        if [ -n "${GREAM_INDEX:-}" ]; then index_args=(--index "$GREAM_INDEX"); fi
        if [ -z "$DATA" ]; then echo "cpu_tiny.sh: set GREAM_DATA=<LC-Rec folder> (or GREAM_DATA_DIR)" >&2; exit 2; fi
        "$PYTHON" -m gream_verl.verl_cpu.tiny_setup "$SETUP" --data "$DATA" "${index_args[@]}"
    fi
    MODEL=$SETUP/model
    RL_DATA=$SETUP
    INDEX=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["index"])' "$SETUP/setup.json")
fi
if [ -n "$INDEX" ]; then ANSWER=${GREAM_ANSWER:-direct}; else ANSWER=${GREAM_ANSWER:-free}; fi
if [ "$ANSWER" != free ] && [ -z "$INDEX" ]; then
    echo "GREAM_ANSWER=$ANSWER needs the item index of the model: set GREAM_INDEX=<X.index.json>" >&2
    exit 2
fi

export VERL_PLATFORM=cpu
export VERL_FILE_LOGGER_PATH=${VERL_FILE_LOGGER_PATH:-$WORK/metrics.jsonl}
export TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# A private Ray session (short path: Ray's socket names must stay under 107 characters), removed
# afterwards unless the caller chose RAY_TMPDIR.
if [ -z "${RAY_TMPDIR:-}" ]; then
    RAY_TMPDIR=$(mktemp -d /tmp/gream_ray.XXXXXX)
    trap 'rm -rf "$RAY_TMPDIR"' EXIT
fi
export RAY_TMPDIR
unset RAY_ADDRESS

set -x
"$PYTHON" -m verl.trainer.main_ppo \
    data.train_files="$RL_DATA/train.parquet" \
    data.val_files="$RL_DATA/val.parquet" \
    data.train_batch_size=4 \
    data.max_prompt_length=256 \
    data.max_response_length=8 \
    data.dataloader_num_workers=0 \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.model.use_remove_padding=False \
    actor_rollout_ref.model.enable_gradient_checkpointing=False \
    +actor_rollout_ref.model.override_config.attn_implementation=sdpa \
    actor_rollout_ref.actor.strategy=fsdp2 \
    actor_rollout_ref.ref.strategy=fsdp2 \
    actor_rollout_ref.actor.ppo_mini_batch_size=4 \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8 \
    actor_rollout_ref.actor.optim.lr=1e-3 \
    actor_rollout_ref.actor.use_kl_loss=True \
    actor_rollout_ref.actor.kl_loss_coef=0.001 \
    actor_rollout_ref.actor.fsdp_config.param_offload=False \
    actor_rollout_ref.actor.fsdp_config.optimizer_offload=False \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8 \
    actor_rollout_ref.rollout.name=hf \
    actor_rollout_ref.rollout.n=4 \
    actor_rollout_ref.rollout.temperature=1.0 \
    actor_rollout_ref.rollout.calculate_log_probs=True \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8 \
    actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
    actor_rollout_ref.rollout.agent.num_workers=1 \
    +actor_rollout_ref.rollout.engine_kwargs.hf.answer="$ANSWER" \
    +actor_rollout_ref.rollout.engine_kwargs.hf.index="${INDEX:-null}" \
    reward.num_workers=1 \
    reward.reward_manager.name=srpo \
    reward.custom_reward_function.path=pkg://gream_verl.srpo.reward \
    reward.custom_reward_function.name=compute_score \
    algorithm.adv_estimator=srpo \
    +algorithm.srpo.k=2 \
    algorithm.use_kl_in_reward=False \
    algorithm.filter_groups.enable=True \
    algorithm.filter_groups.metric=reward \
    algorithm.filter_groups.max_num_gen_batches="${GREAM_MAX_GEN_ROUNDS:-4}" \
    trainer.v1.sampler.custom_sampler.path=pkg://gream_verl.verl_cpu.refill \
    trainer.v1.sampler.custom_sampler.name=CappedReplayBuffer \
    trainer.device=cpu \
    trainer.n_gpus_per_node=1 \
    trainer.nnodes=1 \
    trainer.total_training_steps=2 \
    trainer.val_before_train=False \
    trainer.test_freq=-1 \
    trainer.save_freq=2 \
    trainer.default_local_dir="$WORK/ckpt" \
    trainer.rollout_data_dir="$WORK/rollouts" \
    trainer.logger='[console,file]' \
    trainer.project_name=gream \
    trainer.experiment_name=srpo_cpu_tiny \
    ray_kwargs.ray_init.num_cpus=8 \
    +ray_kwargs.ray_init.num_gpus=1 \
    transfer_queue.backend.SimpleStorage.num_data_storage_units=1 \
    "$@"
