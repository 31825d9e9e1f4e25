"""Benchmark: the item decoder (``engine=auto``) vs ``generate()`` + trie processor
(``engine=hf``) vs the per-beam ``prefix_allowed_tokens_fn`` callback, and a floor.

Beam 20, batch 64, random Qwen3 models of two shapes (the quickstart's: hidden 128, 2 layers;
a larger one: hidden 1024, 8 layers), each with the Office index and a synthetic
100,000-item index. Every method returns the same top-20 items per user (tests/infer).

The **floor** is measured in the same run: one prefill per prompt, then per level the
projections, MLP and LM head for ``B`` rows per prompt with attention reads of one shared
prompt cache (``SharedPrefixDecoder.step`` on fixed tokens), with no search bookkeeping (no
trie, no log-softmax, no top-k). ``engine/floor`` is what the search costs on top.

Goals (one run, 2 cores): engine >= 20x the users/s of generate() on the quickstart shape,
>= 3x on the larger shape; engine <= 1.5x the floor. Prints Markdown tables (users/s, ratios,
peak memory above the starting point: CUDA allocator peak, or on CPU the process RSS sampled
every 2 ms) and writes JSON (``--out``).

    .venv/bin/python scripts/bench/decode_bench.py                       # everything
    .venv/bin/python scripts/bench/decode_bench.py --shapes quickstart   # quicker
    .venv/bin/python scripts/bench/decode_bench.py --device cuda --dtype bfloat16 \\
        --shapes qwen3-0.6b --hf-batch 64                                 # a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch

from gream_verl.data.dataset import load_dataset
from gream_verl.data.split import Example, leave_one_out
from gream_verl.index.tokens import ItemIndex, codes_to_tokens, load_index
from gream_verl.index.trie import build_trie, build_trie_from_codes
from gream_verl.infer.common import chat_text, seqrec_messages
from gream_verl.infer.constrained import constrained_beam_search
from gream_verl.infer.engine import SharedPrefixDecoder, encode_batch
from gream_verl.tables import format_table

OFFICE = Path(__file__).resolve().parents[3] / "shared" / "data" / "Office"

# hidden, layers, attention heads, kv heads, MLP width (head_dim = hidden / heads)
SHAPES = {
    "quickstart": (128, 2, 4, 2, 256),
    "large": (1024, 8, 16, 8, 3072),
    "qwen3-0.6b": (1024, 28, 16, 8, 3072),  # Qwen3-0.6B's widths (its head_dim is 128, ours 64)
}


def synthetic_index(num_items: int, levels: int = 4, codebook: int = 256, seed: int = 0) -> ItemIndex:
    """Random distinct codes (the last level disambiguates repeats, like a collision level)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, codebook, size=(num_items, levels))
    _, first = np.unique(codes, axis=0, return_index=True)
    dup = np.ones(num_items, dtype=bool)
    dup[first] = False
    codes[dup, -1] = rng.integers(0, codebook, size=int(dup.sum()))  # rare; duplicates stay harmless
    return ItemIndex({str(i): codes_to_tokens(c) for i, c in enumerate(codes)})


def make_model(shape: str, tokenizer, index: ItemIndex, device, dtype):
    from gream_verl.model.tiny import build_tiny_qwen3
    from gream_verl.model.vocab import extend_vocabulary

    hidden, layers, heads, kv_heads, mlp = SHAPES[shape]
    model = build_tiny_qwen3(tokenizer, hidden_size=hidden, num_layers=layers, heads=heads, kv_heads=kv_heads,
                             intermediate=mlp, seed=0)  # fmt: skip
    extend_vocabulary(model, tokenizer, index.vocabulary(), seed=0)
    return model.to(device=device, dtype=dtype).eval()


def prompts_for(index: ItemIndex, tokenizer, dataset, batch: int, max_history: int, seed: int = 0) -> list[str]:
    if dataset is not None:
        examples = leave_one_out(dataset.sequences, "test", max_history=max_history)[:batch]
    else:
        rng = np.random.default_rng(seed)
        items = list(index.tokens)
        examples = [Example(str(u), tuple(items[k] for k in rng.choice(len(items), max_history, replace=False)), items[0])
                    for u in range(batch)]  # fmt: skip
    return [chat_text(tokenizer, seqrec_messages(e, dataset, index)) for e in examples]


class PeakMemory:
    """Peak memory above the level at entry, in MB: the CUDA allocator's peak, or on CPU the
    resident set size sampled by a thread every 2 ms (an approximation)."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.mb = 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self.peak = self._rss()
            self.running = True
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        return self

    def _poll(self):
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.mb = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self.running = False
            self.thread.join()
            self.mb = (max(self.peak, self._rss()) - self.base) / 2**20


def timed(fn, repeats: int, device) -> tuple[float, float]:
    """Best-of-``repeats`` (seconds, peak MB) of ``fn()``."""
    best, mb = float("inf"), 0.0
    for _ in range(repeats):
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            fn()
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        if seconds < best:
            best, mb = seconds, mem.mb
    return best, mb


@torch.no_grad()
def floor(model, tokenizer, prompts, beams: int, levels: int, device) -> None:
    """One prefill, then ``levels`` shared-prefix steps of ``beams`` rows per prompt on fixed
    tokens: the model work the engine cannot avoid, without any search bookkeeping."""
    ids, mask = encode_batch(tokenizer, prompts, device)
    dec = SharedPrefixDecoder(model, ids, mask)
    P = ids.shape[0]
    tokens = torch.full((P, beams), int(tokenizer.pad_token_id), device=device)
    parent = torch.zeros((P, beams), dtype=torch.long, device=device)
    for level in range(levels):
        dec.step(parent if level == 0 else torch.arange(beams, device=device).expand(P, beams), tokens)


def run_case(shape: str, name: str, index: ItemIndex, dataset, tokenizer, args) -> dict:
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    model = make_model(shape, tokenizer, index, device, dtype)
    trie = build_trie(index, tokenizer, model.config.vocab_size)
    prompts = prompts_for(index, tokenizer, dataset, args.batch, args.max_history)
    hf_batch = args.batch if shape == "quickstart" else min(args.hf_batch, args.batch)
    lengths = [len(x) for x in tokenizer(prompts, add_special_tokens=False)["input_ids"]]

    def search(engine, use_callback=False, users=args.batch):
        return lambda: constrained_beam_search(model, tokenizer, trie, prompts[:users], num_beams=args.beams,
                                               engine=engine, use_callback=use_callback)  # fmt: skip

    # the same answers first (and a warm-up): the engine returns generate()'s items
    same = sum([c.item for c in a] == [c.item for c in b] for a, b in zip(
        search("auto", users=hf_batch)(), search("hf", users=hf_batch)(), strict=True))  # fmt: skip
    t = {"engine": timed(search("auto"), args.repeats, device),
         "floor": timed(lambda: floor(model, tokenizer, prompts, args.beams, trie.max_depth, device), args.repeats, device),
         "generate": timed(search("hf", users=hf_batch), args.repeats if shape == "quickstart" else 1, device)}  # fmt: skip
    if shape == "quickstart" and not args.skip_callback:
        t["callback"] = timed(search("hf", use_callback=True), 1, device)
    ups = {m: (args.batch if m in ("engine", "floor") else hf_batch) / s for m, (s, _) in t.items()}
    row = {
        "shape": shape, "index": name, "prompt_tokens": round(float(np.mean(lengths))),
        "engine users/s": round(ups["engine"], 1), "generate users/s": round(ups["generate"], 2),
        "callback users/s": round(ups["callback"], 2) if "callback" in ups else None,
        "engine/generate": round(ups["engine"] / ups["generate"], 1),
        "engine/floor (time)": round(t["engine"][0] / t["floor"][0], 2),
        "engine s": round(t["engine"][0], 3), "floor s": round(t["floor"][0], 3),
        "engine MB": round(t["engine"][1]), "floor MB": round(t["floor"][1]), "generate MB": round(t["generate"][1]),
        "generate users": hf_batch, "same top-20": f"{same}/{hf_batch}",
    }  # fmt: skip
    return row


def trie_memory(num_items: int, levels: int = 4, codebook: int = 256, vocab: int = 152_000) -> dict:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, codebook, size=(num_items, levels)) + codebook * np.arange(levels) + 151_000 - levels * codebook
    start = time.perf_counter()
    trie = build_trie_from_codes(codes, [str(i) for i in range(num_items)], key_base=vocab)
    return {"items": num_items, "nodes": trie.num_nodes, "trie_mb": round(trie.nbytes() / 2**20, 1),
            "build_s": round(time.perf_counter() - start, 2)}  # fmt: skip


def main() -> None:
    from gream_verl.model.tiny import train_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="users per call")
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs (generate on larger shapes: 1)")
    parser.add_argument("--shapes", default="quickstart,large", help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--hf-batch", type=int, default=8,
                        help="users per generate() call on the larger shapes (its 20x prefill is slow on a CPU)")  # fmt: skip
    parser.add_argument("--skip-callback", action="store_true")
    parser.add_argument("--synthetic-items", type=int, default=100_000)
    parser.add_argument("--memory-items", type=int, default=1_000_000)
    parser.add_argument("--office", default=str(OFFICE), help="Office LC-Rec folder (skipped if absent)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: no OpenMP spinning on a shared CPU)")
    parser.add_argument("--max-history", type=int, default=20, help="items per history (prompt length)")
    parser.add_argument("--out", default="runs/bench/decode_bench.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    indexes = []
    office = Path(args.office)
    dataset = None
    if (office / "Office.index.reference.json").is_file():
        dataset = load_dataset(office)
        indexes.append(("Office (2,420 items)", load_index(office / "Office.index.reference.json"), dataset))
    indexes.append((f"synthetic ({args.synthetic_items:,} items)", synthetic_index(args.synthetic_items), None))
    texts = [dataset.item_text(i) for i in list(dataset.items)[:2000]] if dataset else []
    rows = []
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            raise SystemExit(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
        for name, index, data in indexes:
            tokenizer = train_tokenizer(texts, vocab_size=1024)
            rows.append(run_case(shape, name, index, data, tokenizer, args))
            print(format_table(rows[-1:]), flush=True)
    memory = trie_memory(args.memory_items)
    print()
    print(format_table(rows))
    print()
    print(format_table([memory]))
    print(f"\nmachine: {os.cpu_count()} CPUs, torch threads {args.threads}, device {args.device}, dtype {args.dtype}; "
          f"load average at the end {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("goals: engine/generate >= 20 (quickstart shape), >= 3 (large); engine/floor <= 1.5")
    result = {"settings": vars(args), "rows": rows, "memory": memory, "load_average": os.getloadavg()}
    from gream_verl.io import write_json

    write_json(args.out, result)
    print(json.dumps({"written": args.out}))


if __name__ == "__main__":
    main()
