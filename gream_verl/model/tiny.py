"""A tiny Qwen3 with a locally trained tokenizer, for CPU tests and smoke runs.

There is no model hub here, so the stand-in for Qwen3-4B is built from a ``Qwen3Config`` with
random weights and a small byte-level BPE trained on local text. It reproduces the parts of
Qwen3 that the pipeline depends on:

* ChatML special tokens ``<|endoftext|>`` (pad and eos), ``<|im_start|>``, ``<|im_end|>``, and
  ``<think>`` / ``</think>`` as ordinary (non-special) added tokens, as in Qwen3;
* a ChatML chat template (with Qwen3's ``enable_thinking`` switch) so LLaMA-Factory's
  ``qwen3`` / ``qwen3_nothink`` templates and verl's ``apply_chat_template`` both work;
* an embedding matrix with *more rows than the tokenizer has tokens* (Qwen3-4B: 151,669 tokens,
  151,936 rows), so vocabulary extension is tested against the padded case.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from gream_verl.model.checkpoint import describe, save_pretrained_atomic

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]
THINK_TOKENS = [THINK_OPEN, THINK_CLOSE]

# ChatML with Qwen3's switches: ``enable_thinking=False`` pre-fills an empty think block after
# the generation prompt; assistant turns are rendered verbatim (reasoning text included).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'tool' -%}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

# Enough text to learn a few hundred merges when the caller brings none.
DEFAULT_TEXTS = [
    "The user has purchased the following items in order. Predict the next item the user will buy.",
    "Below is an instruction that describes a task. Write a response that appropriately completes it.",
    "Item title: ballpoint pens, black ink, pack of twelve. Brand: Office Essentials. Category: Office Products.",
    "Item title: spiral notebook, college ruled, 100 sheets. Category: Paper. Description: durable cover.",
    "Item title: stapler with 1000 staples, desktop, jam free. Category: Office Supplies.",
    "Let me think step by step about the user's preferences before recommending the next item.",
    "The user seems to prefer writing instruments and paper products from budget brands.",
    "Recommended item: a refill pack of gel pens that matches the user's earlier purchases.",
    "Guitar strings, acoustic, light gauge. Drum sticks, maple wood. Keyboard stand, adjustable height.",
    "Moisturizing face cream for dry skin. Shampoo and conditioner set. Sunscreen lotion SPF 50.",
    "Running shoes for men, lightweight. Yoga mat, non slip, 6 mm. Water bottle, insulated steel.",
    "What is the next item? The answer is the item index of the recommended product.",
]


def _training_texts(texts: Iterable[str] | None) -> list[str]:
    texts = [t for t in (texts or []) if isinstance(t, str) and t.strip()]
    return texts + DEFAULT_TEXTS


def train_tokenizer(texts: Iterable[str] | None = None, vocab_size: int = 1024, out_dir: str | Path | None = None):
    """Train a byte-level BPE on ``texts`` (plus a small built-in corpus) and wrap it as a
    ``PreTrainedTokenizerFast`` with Qwen3's special tokens and a ChatML chat template.

    Any string encodes (byte-level alphabet), so unseen words cost more tokens, never fail.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    min_size = 256 + len(SPECIAL_TOKENS)
    if vocab_size < min_size:
        raise ValueError(f"vocab_size {vocab_size} is below the byte alphabet plus special tokens ({min_size})")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_training_texts(texts), trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=4096,
        padding_side="left",  # generation batches are left-padded, as verl does
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_tokens(THINK_TOKENS, special_tokens=False)  # Qwen3: ordinary added tokens
    tokenizer.chat_template = CHAT_TEMPLATE
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def padded_vocab_rows(num_tokens: int, multiple: int) -> int:
    """Embedding rows for ``num_tokens``: the next multiple of ``multiple`` strictly above it,
    so there is always at least one padding row, as in real Qwen3 checkpoints."""
    if multiple < 1:
        raise ValueError(f"pad_vocab_to_multiple_of must be >= 1, got {multiple}")
    return (num_tokens // multiple + 1) * multiple


def build_tiny_qwen3(
    tokenizer,
    hidden_size: int = 64,
    num_layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    tie_word_embeddings: bool = True,
    pad_vocab_to_multiple_of: int = 64,
    attention_dropout: float = 0.0,
    seed: int = 0,
):
    """A randomly initialised ``Qwen3ForCausalLM`` whose embedding has more rows than ``tokenizer``.
    ``attention_dropout`` is Qwen3's only dropout (a regulariser for small data)."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    if hidden_size % heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by heads {heads}")
    if heads % kv_heads:
        raise ValueError(f"heads {heads} is not divisible by kv_heads {kv_heads}")
    eos_ids = [tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(ENDOFTEXT)]
    config = Qwen3Config(
        vocab_size=padded_vocab_rows(len(tokenizer), pad_vocab_to_multiple_of),
        hidden_size=hidden_size,
        intermediate_size=intermediate,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden_size // heads,
        max_position_embeddings=4096,
        tie_word_embeddings=tie_word_embeddings,
        attention_dropout=float(attention_dropout),
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    # Chat generations end at <|im_end|>; raw text at <|endoftext|> (Qwen3 lists both).
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.pad_token_id, eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id
    )
    return model


def save_tiny_model(
    out_dir: str | Path,
    texts: Iterable[str] | None = None,
    vocab_size: int = 1024,
    **model_kwargs,
) -> dict:
    """Train a tokenizer, build the tiny model and save both into ``out_dir`` (written to a
    temporary folder first and renamed, so a crash leaves no half-written checkpoint)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not an empty folder")
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    model = build_tiny_qwen3(tokenizer, **model_kwargs)
    save_pretrained_atomic(model, tokenizer, out_dir)
    return describe(model, tokenizer, out_dir)


def texts_from_data(path: str | Path, limit: int = 5000) -> list[str]:
    """Item texts (all fields of up to ``limit`` items) of a dataset folder or file that
    ``gream_verl.data.dataset.load_dataset`` reads, for tokenizer training."""
    from gream_verl.data.dataset import load_dataset

    data = load_dataset(path)
    texts = [" ".join(str(v) for v in fields.values()) for fields in list(data.items.values())[:limit]]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError(f"{path}: no item texts to train a tokenizer on")
    return texts
