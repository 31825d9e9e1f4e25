"""A Hugging Face transformers rollout for verl 0.9.1 (``actor_rollout_ref.rollout.name=hf``).

verl's agent loop talks to a rollout *server* actor: ``generate(prompt_ids, sampling_params,
request_id, ...) -> TokenOutput``. In the hybrid (colocated) layout the actor worker owns a
``BaseRollout`` adapter that pushes weights to that server and sleeps / wakes it. Three pieces:

* ``HFRolloutServer``: a Ray actor holding a transformers model on CPU. Concurrent requests are
  queued and decoded together as one batch (``generate.generate``).
* ``HFReplica``: the ``RolloutReplica`` that launches one server per replica, named
  ``hf_server_<replica>_0`` like verl's own servers.
* ``HFServerAdapter``: the worker-side ``BaseRollout``; ``update_weights`` gathers the actor's
  per-tensor parameters on every rank and the replica's first rank sends them to the server.

Sleep / wake-up are no-ops: on CPU the rollout model lives in host memory next to the trainer and
there is no device memory to hand back (verl allows this; ``free_cache_engine`` only guards it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from typing import Any

import ray
import torch

from gream_verl.verl_cpu.generate import SampleBatch, SamplingParams, answer_format

logger = logging.getLogger(__name__)

ROLLOUT_NAME = "hf"

# actor_rollout_ref.rollout.engine_kwargs.hf.<key>
HF_DEFAULTS: dict[str, Any] = {
    "answer": "free",        # free | direct (a valid item index, then the end token) | reason (text, <answer>, index)
    "index": None,           # X.index.json: the items the direct / reason answers are constrained to
    "batch_window_ms": 20,   # a batch is sent to the model once no request arrived for this long ...
    "max_wait_ms": 2000,     # ... or after this long
    "threads": int(os.environ.get("GREAM_ROLLOUT_THREADS", "1")),  # 1: fastest on a CPU shared with the trainer
    "sampler": "gream_verl.verl_cpu.generate:build_sampler",  # module:function returning a SampleBatch
}


def server_actor_name(replica_rank: int, name_suffix: str = "", kind: str = "") -> str:
    """Ray name of a replica's server: ``hf_server[_reward|_teacher]_<replica>_0<suffix>``."""
    kind = f"{kind}_" if kind else ""
    return f"{ROLLOUT_NAME}_server_{kind}{replica_rank}_0{name_suffix}"


def resolve_max_tokens(sampling_params: dict, prompt_len: int, prompt_length: int, response_length: int,
                       max_model_len: int | None) -> int:
    """verl's vLLM server rule: ``max_tokens`` (or ``max_new_tokens``) if given, else the configured
    response length within the prompt+response budget; clamped to ``[1, room left in context]``."""
    limit = max_model_len or (prompt_length + response_length)
    room = limit - prompt_len
    if room < 1:
        raise ValueError(f"prompt of {prompt_len} tokens leaves no room to generate within {limit} tokens")
    if "max_tokens" in sampling_params:
        wanted = int(sampling_params["max_tokens"])
    elif "max_new_tokens" in sampling_params:
        wanted = int(sampling_params["max_new_tokens"])
    else:
        wanted = min(response_length, prompt_length + response_length - prompt_len)
    return max(1, min(wanted, room))


def hf_settings(engine_kwargs: dict | None) -> dict[str, Any]:
    """``engine_kwargs.hf`` over :data:`HF_DEFAULTS`; an unknown key is an error, not ignored."""
    given = dict((engine_kwargs or {}).get(ROLLOUT_NAME) or {})
    unknown = sorted(set(given) - set(HF_DEFAULTS))
    if unknown:
        raise ValueError(f"actor_rollout_ref.rollout.engine_kwargs.hf: unknown keys {unknown}; known: {sorted(HF_DEFAULTS)}")
    return {**HF_DEFAULTS, **given}


def load_sampler_factory(spec: str):
    """The function named by ``module:function`` (``engine_kwargs.hf.sampler``)."""
    import importlib

    module, sep, name = str(spec).partition(":")
    if not sep or not module or not name:
        raise ValueError(f"engine_kwargs.hf.sampler must be 'module:function', got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"engine_kwargs.hf.sampler={spec!r} cannot be loaded: {e}") from e


class HFRolloutServer:
    """Token-in/token-out generation with a transformers model; one per replica (Ray actor).

    Settings come from ``actor_rollout_ref.rollout.engine_kwargs.hf`` (see :data:`HF_DEFAULTS`).
    """

    def __init__(self, config, model_config, replica_rank: int = 0, threads: int | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
        from verl.utils.config import omega_conf_to_dataclass
        from verl.workers.config import HFModelConfig

        self.config = omega_conf_to_dataclass(config)
        self.model_config = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.replica_rank = replica_rank
        self.settings = hf_settings(self.config.engine_kwargs)
        torch.set_num_threads(int(threads or self.settings["threads"]))
        path = self.model_config.local_path
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.model.eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        eos: list[int] = []
        try:
            gen_eos = GenerationConfig.from_pretrained(path).eos_token_id
            eos.extend(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        except OSError:
            pass
        if tokenizer.eos_token_id is not None:
            eos.append(tokenizer.eos_token_id)
        eos = [int(e) for e in eos if e is not None]
        if not eos:
            raise ValueError(f"{path}: neither generation_config.json nor the tokenizer defines an end token")
        self.eos_token_ids = sorted(set(eos))
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.eos_token_ids[0]
        vocab = self.model.get_output_embeddings().weight.shape[0]
        # the chat turn's end (Qwen3: <|im_end|>, the first of generation_config's eos ids) ends an answer
        self.answer = answer_format(self.settings["answer"], tokenizer, self.settings["index"], vocab, eos[0])
        factory = load_sampler_factory(self.settings["sampler"])
        self.sample_batch: SampleBatch = factory(self.model, tokenizer, self.answer, self.eos_token_ids,
                                                 self.pad_token_id, int(self.config.seed) + replica_rank)
        self.global_steps = None
        self.weight_version = 0
        self._queue: list[tuple[list[int], SamplingParams, asyncio.Future]] = []
        self._draining = False
        self.batch_sizes: list[int] = []  # rows per decode call (for tests and logs)

    # -- generation -------------------------------------------------------------------------
    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data=None,
        video_data=None,
        audio_data=None,
        mm_processor_kwargs=None,
        priority: int = 0,
        **kwargs,
    ):
        """One request -> ``TokenOutput`` (token ids, log-probs, stop reason, global_steps)."""
        from verl.workers.rollout.replica import TokenOutput

        if image_data is not None or video_data is not None or audio_data is not None:
            raise ValueError("the hf CPU rollout is text-only; got image/video/audio data")
        prompt_ids = [int(t) for t in prompt_ids]
        params = dict(sampling_params)
        max_tokens = resolve_max_tokens(
            params, len(prompt_ids), self.config.prompt_length, self.config.response_length,
            self.config.max_model_len,
        )
        temperature = float(params.get("temperature", 1.0))
        top_k = params.get("top_k", -1)
        sp = SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=float(params.get("top_p", 1.0)),
            top_k=-1 if top_k is None else int(top_k),
            n=int(params.get("n", 1)),
        )
        if sp.n != 1:
            raise ValueError("TokenOutput carries one sequence: verl repeats prompts (rollout.n) instead of n > 1")
        future = asyncio.get_running_loop().create_future()
        self._queue.append((prompt_ids, sp, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        generation = await future
        return TokenOutput(
            token_ids=generation.token_ids,
            log_probs=generation.log_probs if params.get("logprobs") else None,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    async def _gather(self, limit: int) -> None:
        """Wait while requests keep arriving: until none came in the last ``batch_window_ms``, the
        queue holds ``limit`` requests, or ``max_wait_ms`` passed. verl's agent loop sends the
        ``rollout.n`` samples of every prompt as separate requests, a few milliseconds apart."""
        window = float(self.settings["batch_window_ms"]) / 1000
        deadline = asyncio.get_running_loop().time() + float(self.settings["max_wait_ms"]) / 1000
        seen = -1
        while len(self._queue) != seen and len(self._queue) < limit and asyncio.get_running_loop().time() < deadline:
            seen = len(self._queue)
            await asyncio.sleep(window)

    async def _drain(self):
        """Decode everything queued, batch after batch, until the queue is empty."""
        try:
            while self._queue:
                limit = max(1, int(self.config.max_num_seqs or len(self._queue)))
                await self._gather(limit)
                batch, self._queue = self._queue[:limit], self._queue[limit:]
                self.batch_sizes.append(len(batch))
                try:
                    results = await asyncio.to_thread(
                        self.sample_batch, [p for p, _, _ in batch], [sp for _, sp, _ in batch]
                    )
                    if len(results) != len(batch):
                        raise RuntimeError(f"sampler returned {len(results)} generations for {len(batch)} requests")
                except Exception as error:  # noqa: BLE001  handed to every waiting request
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, _, future), generation in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(generation)
        finally:
            self._draining = False

    # -- weights ----------------------------------------------------------------------------
    def update_weights(self, named_tensors: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """Load the actor's parameters (HF names); returns how many tensors were loaded."""
        state = self.model.state_dict()
        unknown = sorted(set(named_tensors) - set(state))
        if unknown:
            raise KeyError(f"rollout model has no parameters named {unknown[:5]} (of {len(unknown)})")
        with torch.no_grad():
            for name, tensor in named_tensors.items():
                target = state[name]
                if tuple(target.shape) != tuple(tensor.shape):
                    raise ValueError(f"{name}: actor sent shape {tuple(tensor.shape)}, rollout has {tuple(target.shape)}")
                target.copy_(tensor.to(target.dtype))
        self.weight_version += 1
        if global_steps is not None:
            self.global_steps = global_steps
        return len(named_tensors)

    def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    def get_weight_version(self) -> int:
        return self.weight_version

    def get_server_address(self) -> str:
        return f"{ROLLOUT_NAME}://replica-{self.replica_rank}"

    # -- lifecycle calls verl makes; nothing to free on CPU ----------------------------------
    async def wake_up(self, tags: list[str] | None = None):
        return None

    async def sleep(self):
        return None

    async def clear_kv_cache(self):
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def abort_all_requests(self, reject_request: bool = False) -> dict:
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self):
        return None

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None


@functools.cache
def _replica_class():
    from verl.workers.rollout.replica import RolloutReplica

    class HFReplica(RolloutReplica):
        """One ``HFRolloutServer`` per replica; placed without accelerator resources."""

        def rollout_worker_use_gpu(self) -> bool:
            return False

        async def launch_servers(self):
            kind = "reward" if self.is_reward_model else "teacher" if self.is_teacher_model else ""
            name = server_actor_name(self.replica_rank, self.name_suffix, kind)
            server = (
                ray.remote(HFRolloutServer)
                .options(name=name, num_cpus=0, max_concurrency=self.max_concurrency)
                .remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
            )
            self.servers = [server]
            self._server_handle = server
            self._server_address = await server.get_server_address.remote()

    return HFReplica


def load_replica_class():
    """Loader for ``RolloutReplicaRegistry.register("hf", ...)``."""
    return _replica_class()


@functools.cache
def _adapter_class():
    from verl.workers.rollout.base import BaseRollout

    class HFServerAdapter(BaseRollout):
        """Worker-side client of the replica's ``HFRolloutServer`` (weights, sleep, wake-up)."""

        def __init__(self, config, model_config, device_mesh, replica_rank: int = -1):
            super().__init__(config, model_config, device_mesh)
            rank = int(os.environ.get("RANK", "0"))
            world = (
                self.config.tensor_model_parallel_size
                * self.config.data_parallel_size
                * self.config.pipeline_model_parallel_size
            )
            self.replica_rank = rank // world if replica_rank == -1 else replica_rank
            self.rollout_rank = rank % world
            self._has_server = self.rollout_rank == 0
            self.server_handle = None

        def _server(self):
            if self.server_handle is None:
                self.server_handle = ray.get_actor(server_actor_name(self.replica_rank))
            return self.server_handle

        async def resume(self, tags: list[str]):
            if self.config.free_cache_engine and self._has_server:
                await self._server().wake_up.remote(tags=tags)

        async def release(self):
            if self.config.free_cache_engine and self._has_server:
                await self._server().sleep.remote()

        @torch.no_grad()
        async def update_weights(self, weights, wire_format: str = "named_tensors", global_steps=None,
                                 peft_config=None, **kwargs):
            if wire_format != "named_tensors":
                raise NotImplementedError(f"hf rollout takes wire_format='named_tensors', got {wire_format!r}")
            if peft_config is not None:
                raise NotImplementedError("hf rollout does not load LoRA adapters; set model.lora.merge=True")
            from verl.workers.rollout.utils import ensure_async_iterator

            named = {}
            async for name, tensor in ensure_async_iterator(weights):
                if hasattr(tensor, "full_tensor"):  # DTensor shard: every rank joins the gather
                    tensor = tensor.full_tensor()
                if self._has_server:
                    named[name] = tensor.detach().to("cpu", copy=True)
            if self._has_server:
                await self._server().update_weights.remote(named, global_steps)

        def generate_sequences(self, prompts):
            raise NotImplementedError("the hf rollout is server based: verl's agent loop calls generate()")

    return HFServerAdapter


def __getattr__(name: str):
    # ``verl.workers.rollout.base.get_rollout_class`` imports this module and reads the attribute,
    # so the verl-dependent class is only built when verl asks for it.
    if name == "HFServerAdapter":
        return _adapter_class()
    if name == "HFReplica":
        return _replica_class()
    raise AttributeError(name)
