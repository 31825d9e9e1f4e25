"""What direct and reasoning evaluation share: loading, prompts, validation, data-parallel
sharding and result files."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gream_verl.data.dataset import RecDataset
from gream_verl.data.split import Example, leave_one_out
from gream_verl.index.tokens import ItemIndex
from gream_verl.io import write_json, write_jsonl

PromptFn = Callable[[Example, RecDataset, ItemIndex], list[dict]]


def seqrec_messages(example: Example, dataset: RecDataset, index: ItemIndex, template: int = 0) -> list[dict]:
    """Direct mode prompt: the SFT ``seqrec`` template, joined as LLaMA-Factory's alpaca
    converter does (``instruction + "\\n" + input``)."""
    from gream_verl.tasks.prompts import format_history, templates

    choices = templates("seqrec")
    if not 0 <= template < len(choices):
        raise ValueError(f"prompt_template {template} out of range 0..{len(choices) - 1}")
    instruction, inp = choices[template].render(history=format_history([index.string(i) for i in example.history]))
    return [{"role": "user", "content": "\n".join(p for p in (instruction, inp) if p)}]


def reason_messages(example: Example, dataset: RecDataset, index: ItemIndex) -> list[dict]:
    """Reasoning mode prompt: the SFT ``reason`` template (history as index + title lines)."""
    from gream_verl.tasks.reasoning import reason_prompt

    instruction, inp = reason_prompt(example, dataset, index)
    return [{"role": "user", "content": "\n".join(p for p in (instruction, inp) if p)}]


def chat_text(tokenizer, messages: list[dict], chat_template_kwargs: dict | None = None) -> str:
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat template; evaluation prompts are chat prompts")
    kwargs = {k: v for k, v in (chat_template_kwargs or {}).items() if v is not None}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)


def check_items_indexed(examples: Sequence[Example], index: ItemIndex, source: str) -> None:
    missing = sorted({i for e in examples for i in (*e.history, e.target) if i not in index})
    if missing:
        raise ValueError(f"{len(missing)} items of {source} are not in the index (e.g. {missing[:5]})")


def eval_examples(dataset: RecDataset, index: ItemIndex, split: str, max_history: int, limit: int | None) -> list[Example]:
    if split not in ("valid", "test"):
        raise ValueError(f"evaluation split must be 'valid' or 'test', got {split!r}")
    examples = leave_one_out(dataset.sequences, split, max_history=max_history)
    if limit is not None:
        if int(limit) < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        examples = examples[: int(limit)]
    if not examples:
        raise ValueError(f"{dataset.source}: no users with at least 3 interactions to evaluate")
    check_items_indexed(examples, index, dataset.source or dataset.name)
    return examples


def load_eval_inputs(cfg) -> tuple[RecDataset, ItemIndex, list[Example]]:
    """Dataset, index and the examples of ``cfg.split`` an ``eval`` config names."""
    from gream_verl.data.dataset import load_dataset
    from gream_verl.index.tokens import load_index

    dataset = load_dataset(cfg.data)
    index = load_index(cfg.index)
    return dataset, index, eval_examples(dataset, index, cfg.split, int(cfg.max_history), cfg.limit)


def resolve_device(name: str = "auto"):
    import torch

    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(name)


def load_model(path: str | Path, device="auto", dtype: str = "auto"):
    """(model in eval mode on ``device``, tokenizer) from a Hugging Face folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a model folder (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    model.to(resolve_device(device) if not hasattr(device, "type") else device)
    model.eval()
    return model, tokenizer


class Shards:
    """Data parallelism under ``torchrun``: each rank takes every ``world``-th example; results
    are gathered (``all_gather_object``) back into the original order on every rank. Use it as a
    context manager, so that the process group is torn down on every rank together."""

    def __init__(self):
        import torch.distributed as dist

        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self._owns_group = False
        if self.world > 1 and not dist.is_initialized():
            import torch

            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
            self._owns_group = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence) -> list:
        return list(items[self.rank :: self.world])

    def gather(self, local: list) -> list:
        """Per-rank lists (from :meth:`take`) back in the original order."""
        if self.world == 1:
            return list(local)
        import torch.distributed as dist

        parts: list = [None] * self.world
        dist.all_gather_object(parts, local)
        out = []
        for k in range(max(len(p) for p in parts)):
            out.extend(p[k] for p in parts if k < len(p))
        return out

    def __enter__(self) -> Shards:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Tear the group down on all ranks together: a gloo rank that destroys its group while
        a peer is still working (rank 0 writes the results) can abort with SIGABRT. After an
        error there is no barrier, since the peers may be waiting in another collective."""
        if not self._owns_group:
            return
        import torch.distributed as dist

        if exc_type is None:
            dist.barrier()
        dist.destroy_process_group()
        self._owns_group = False


def default_out(dataset: RecDataset, mode: str, split: str) -> Path:
    return Path("runs") / "eval" / f"{dataset.name}_{mode}_{split}.json"


def write_results(result: dict, out: str | Path, predictions: list[dict] | None, predictions_path: str | None) -> dict:
    """Write the results JSON (and predictions JSONL) atomically; returns ``result``."""
    if predictions_path:
        write_jsonl(predictions_path, predictions or [])
        result["predictions_file"] = str(predictions_path)
    result["results_file"] = str(out)
    write_json(out, result)
    return result


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 3)


def run_entry_point(label: str, evaluate: Callable[[], dict], as_json: bool) -> int:
    """Body of the ``python -m`` / ``torchrun -m`` entry points: clear errors, rank 0 prints."""
    import logging
    import sys

    from gream_verl.tables import emit

    logging.basicConfig(level=logging.INFO)
    try:
        result = evaluate()
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        print(f"{label}: error: {e}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", 0)) == 0:
        emit(result, as_json=as_json)
    return 0
