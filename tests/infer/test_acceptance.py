"""End to end on Office: tiny Qwen3 with the extended vocabulary, a short fine-tune on
training sequences (plain torch loop), then `gream eval direct` twice."""

import json

import pytest
import torch


def sft_batches(dataset, index, tokenizer, eos_id, num_samples=256, batch_size=16):
    """(input_ids, attention_mask, labels) batches: seqrec prompt -> target index + EOS,
    loss on the response only, left-padded like the evaluation prompts."""
    from gream_verl.data.split import leave_one_out
    from gream_verl.infer.common import chat_text, seqrec_messages

    examples = leave_one_out(dataset.sequences, "train")[:num_samples]
    rows = []
    for e in examples:
        prompt = tokenizer(chat_text(tokenizer, seqrec_messages(e, dataset, index)), add_special_tokens=False).input_ids
        answer = tokenizer.convert_tokens_to_ids(index.tokens[e.target]) + [eos_id]
        rows.append((prompt, answer))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(p) + len(a) for p, a in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        labels = torch.full((len(chunk), width), -100)
        for i, (p, a) in enumerate(chunk):
            seq = p + a
            ids[i, width - len(seq) :] = torch.tensor(seq)
            mask[i, width - len(seq) :] = 1
            labels[i, width - len(a) :] = torch.tensor(a)
        yield ids, mask, labels


@pytest.mark.slow
def test_office_finetune_then_evaluate(tmp_path, office_dir, capsys):
    from gream_verl.cli import main
    from gream_verl.data.dataset import load_dataset
    from gream_verl.index.tokens import load_index
    from gream_verl.infer.constrained import item_eos_token_id
    from gream_verl.model.tiny import build_tiny_qwen3, texts_from_data, train_tokenizer
    from gream_verl.model.vocab import extend_vocabulary

    index_path = office_dir / "Office.index.reference.json"
    dataset, index = load_dataset(office_dir), load_index(index_path)
    torch.manual_seed(0)
    tokenizer = train_tokenizer(texts_from_data(office_dir, limit=500), vocab_size=600)
    model = build_tiny_qwen3(tokenizer, seed=0)
    extend_vocabulary(model, tokenizer, index.vocabulary(), seed=0)
    eos = item_eos_token_id(model, tokenizer)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _epoch in range(2):
        for ids, mask, labels in sft_batches(dataset, index, tokenizer, eos):
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            loss = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, labels=labels).loss
            loss.backward()
            optim.step()
            optim.zero_grad()
            losses.append(loss.item())
    assert sum(losses[-4:]) / 4 < losses[0] - 1.0  # it learned something
    model.eval()
    model_dir = tmp_path / "model"
    model.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))

    results = []
    for run in ("a", "b"):
        out, preds = tmp_path / f"{run}.json", tmp_path / f"{run}.jsonl"
        code = main(["eval", "direct", "--model", str(model_dir), "--data", str(office_dir), "--index", str(index_path),
                     "--beams", "10", "--batch-size", "8", "--limit", "24", "--out", str(out),
                     "--save-predictions", str(preds), "--json", "progress=false"])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        results.append((json.loads(out.read_text()), preds.read_text()))
    (first, preds_a), (second, preds_b) = results
    assert first["metrics"] == second["metrics"] and preds_a == preds_b
    assert all(0.0 <= v <= 1.0 for v in first["metrics"].values())
    rows = [json.loads(line) for line in preds_a.splitlines()]
    assert len(rows) == 24
    for r in rows:
        assert len(r["predictions"]) == 10 == len(set(r["predictions"]))
        assert all(p in index for p in r["predictions"])
