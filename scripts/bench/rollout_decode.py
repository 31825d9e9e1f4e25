"""The CPU rollout's decoder (gream_verl.verl_cpu.generate.decode) against plain KV-cached decoding.

    .venv/bin/python scripts/bench/rollout_decode.py --model runs/qs/sft --rl-data runs/qs/rl_direct \
        --index runs/qs/index/Office.index.json [--answer direct] [--prompts 64] [--n 8] [--max-tokens 16]

One SRPO generation batch: ``--prompts`` RL prompts x ``--n`` samples, as verl's agent loop sends
them. ``plain`` is what the server did before: the rows left-padded into one batch, every row
prefilled, a growing ``DynamicCache`` (torch.cat per step), every row decoded until all are done,
no answer constraint. ``decode`` is the server's path now. Ratios are measured in the same run,
so a CPU shared with other jobs slows both alike.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


@torch.no_grad()
def plain_generate(model, prompts, max_tokens: int, pad_token_id: int, generator) -> int:
    """Reference: the former server's loop (left-padded batch, DynamicCache). Returns tokens made."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(p)
        mask[r, width - len(p):] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    step_input, past = ids, None
    for _ in range(max_tokens):
        out = model(input_ids=step_input, attention_mask=mask, position_ids=position_ids, past_key_values=past,
                    use_cache=True)
        past = out.past_key_values
        token = torch.multinomial(torch.softmax(out.logits[:, -1].float(), -1), 1, generator=generator)
        step_input = token
        mask = torch.cat([mask, torch.ones_like(token)], dim=-1)
        position_ids = position_ids[:, -1:] + 1
    return len(prompts) * max_tokens


def main(argv: list[str] | None = None) -> int:
    import pandas as pd
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gream_verl.verl_cpu.generate import SamplingParams, answer_format, decode

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="HF model folder (the SFT model)")
    p.add_argument("--rl-data", required=True, help="`gream rl build` folder (train.parquet)")
    p.add_argument("--index", default=None, help="X.index.json (for --answer direct|reason)")
    p.add_argument("--answer", default="direct", choices=["free", "direct", "reason"])
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--skip-plain", action="store_true", help="time the decoder only")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rows = pd.read_parquet(f"{args.rl_data}/train.parquet").head(args.prompts)
    prompts = [tokenizer(tokenizer.apply_chat_template(list(m), add_generation_prompt=True, tokenize=False),
                         add_special_tokens=False).input_ids for m in rows["prompt"]]
    eos = model.generation_config.eos_token_id
    eos = list(eos) if isinstance(eos, (list, tuple)) else [eos]
    vocab = model.get_output_embeddings().weight.shape[0]
    fmt = answer_format(args.answer, tokenizer, args.index, vocab, eos[0])
    flat = [q for q in prompts for _ in range(args.n)]
    params = [SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature)] * len(flat)

    start = time.perf_counter()
    out = decode(model, flat, params, eos, tokenizer.pad_token_id, torch.Generator().manual_seed(0), fmt)
    decode_s = time.perf_counter() - start
    lengths = [len(g.token_ids) for g in out]
    result = {"rows": len(flat), "prompt_tokens_mean": sum(map(len, prompts)) / len(prompts),
              "answer": args.answer, "max_tokens": args.max_tokens, "threads": torch.get_num_threads(),
              "decode_s": round(decode_s, 3), "response_tokens_mean": sum(lengths) / len(lengths),
              "stopped": sum(g.finish_reason == "stop" for g in out) / len(out)}
    if not args.skip_plain:
        start = time.perf_counter()
        plain_generate(model, flat, args.max_tokens, tokenizer.pad_token_id, torch.Generator().manual_seed(0))
        result["plain_s"] = round(time.perf_counter() - start, 3)
        result["speedup"] = round(result["plain_s"] / decode_s, 2)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
