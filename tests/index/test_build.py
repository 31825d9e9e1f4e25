import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gream_verl.cli import main
from gream_verl.config import load_config
from gream_verl.data.dataset import RecDataset
from gream_verl.index import ItemIndex, load_index
from gream_verl.index.build import (
    build_index,
    collision_stats,
    embedding_fields,
    index_collision_stats,
    item_texts,
    resolve_collisions,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_resolve_collisions_uniform_level():
    codes = np.array([[1, 2], [1, 2], [3, 4], [1, 2], [3, 5]])
    rows = resolve_collisions(codes, codebook_size=8, mode="all")
    assert rows == [[1, 2, 0], [1, 2, 1], [3, 4, 0], [1, 2, 2], [3, 5, 0]]
    rows = resolve_collisions(codes, codebook_size=8, mode="colliding")
    assert rows == [[1, 2, 0], [1, 2, 1], [3, 4], [1, 2, 2], [3, 5]]


def test_no_collision_no_extra_level():
    codes = np.array([[1, 2], [2, 2], [3, 4]])
    assert resolve_collisions(codes, 8) == codes.tolist()


def test_group_larger_than_codebook_is_an_error():
    with pytest.raises(ValueError, match="5 items share one code, more than codebook_size 4"):
        resolve_collisions(np.zeros((5, 2), dtype=int), codebook_size=4)
    with pytest.raises(ValueError, match="collision mode"):
        resolve_collisions(np.zeros((2, 2), dtype=int), 4, mode="sometimes")


@settings(max_examples=60, deadline=None)
@given(codes=arrays(np.int64, st.tuples(st.integers(1, 60), st.integers(1, 3)), elements=st.integers(0, 2)),
       mode=st.sampled_from(["all", "colliding"]))
def test_resolution_unique_and_keeps_prefixes(codes, mode):
    try:
        rows = resolve_collisions(codes, codebook_size=64, mode=mode)
    except ValueError:
        assert collision_stats(codes)["max_group"] > 64
        return
    assert len({tuple(r) for r in rows}) == len(rows)  # every index unique
    assert all(r[: codes.shape[1]] == c for r, c in zip(rows, codes.tolist(), strict=True))  # prefixes kept
    lengths = {len(r) for r in rows}
    if mode == "all":
        assert len(lengths) == 1
    keys = ["".join(f"<{x}>" for x in r) for r in rows]  # no index is a prefix of another
    assert not any(a != b and b.startswith(a) for a in keys for b in keys)


def test_collision_stats():
    s = collision_stats(np.array([[0, 1], [0, 1], [0, 2], [0, 1]]))
    assert s == {"collision_rate": 0.75, "collisions": 2, "max_group": 3}
    index = ItemIndex({"a": ["<a_0>", "<b_1>"], "b": ["<a_0>", "<b_1>"], "c": ["<a_0>", "<b_2>"], "d": ["<a_1>"]})
    assert index_collision_stats(index) == {"collision_rate": 0.5, "collisions": 1, "max_group": 2}


@pytest.mark.parametrize("value, expected", [("[title]", ["title"]), ("title", ["title"]),
                                             ("title,description", ["title", "description"]),
                                             ("title+description", ["title", "description"])])
def test_embedding_fields_forms(value, expected):
    assert embedding_fields(load_config("index", overrides=[f"embedding.fields={value}"])) == expected


def small_dataset(n=120):
    items = {str(i): {"title": f"item number {i}", "description": "desc" if i % 2 else ""} for i in range(n)}
    items["7"] = {}  # an item without text
    seqs = {f"u{u}": [str((u * 7 + j) % n) for j in range(5)] for u in range(30)}
    return RecDataset("Tiny", seqs, items, source="memory")


def test_item_texts_fields_and_fallbacks():
    ds = small_dataset()
    texts = item_texts(ds, ["title", "description"])
    assert texts[1] == "Title: item number 1; Description: desc"
    assert texts[2] == "Title: item number 2"
    assert texts[7] == "Title: item 7"  # no text at all -> id
    ds.items["1"]["enriched"] = "better words"
    assert item_texts(ds, ["title", "description"])[1] == "Title: item number 1; Enriched: better words"
    assert item_texts(ds, ["title", "description"], use_enriched=False)[1].endswith("Description: desc")
    with pytest.raises(ValueError, match="no item text"):
        item_texts(RecDataset("Bare", {"u": ["1", "2"]}), ["title"])


def test_build_index_from_precomputed_embeddings(tmp_path):
    ds = small_dataset()
    rng = np.random.default_rng(0)
    np.save(tmp_path / "emb.npy", rng.normal(size=(120, 6)).astype(np.float32))
    cfg = load_config("index", overrides=[f"embedding.path={tmp_path / 'emb.npy'}", "rqkmeans.levels=2",
                                          "rqkmeans.codebook_size=8"])
    index, report = build_index(ds, cfg)
    assert len(index) == 120 and index.num_collisions == 0
    assert report["collisions_after"] == 0 and report["collision_rate_before"] > 0  # 64 codes for 120 items
    assert report["levels"] == 3 and report["collision_level_added"]
    assert report["input_mse"] == pytest.approx(1.0, abs=1e-5)  # normalize: true by default
    cfg.embedding.normalize = False
    assert build_index(ds, cfg)[1]["input_mse"] > 3.0  # 6-d standard normal rows: E||x||^2 = 6
    np.save(tmp_path / "short.npy", rng.normal(size=(5, 6)).astype(np.float32))
    cfg.embedding.path = str(tmp_path / "short.npy")
    with pytest.raises(ValueError, match=r"short.npy: expected shape \[120, dim\]"):
        build_index(ds, cfg)


def test_sizes_are_checked_before_embedding(monkeypatch):
    import gream_verl.index.build as build

    def embed_nothing(*args, **kwargs):
        raise AssertionError("embedded before the size check")

    monkeypatch.setattr(build, "item_embeddings", embed_nothing)
    ds = small_dataset(n=40)
    for override, message in [
        ("rqkmeans.codebook_size=64", r"rqkmeans.codebook_size 64 is larger than the number of items 40 of dataset 'Tiny'"),
        ("rqkmeans.levels=0", r"rqkmeans.levels must be >= 1, got 0"),
        ("collision.mode=sometimes", r"unknown collision.mode 'sometimes'"),
    ]:
        with pytest.raises(ValueError, match=message):
            build_index(ds, load_config("index", overrides=["rqkmeans.codebook_size=8", override]))


def write_lcrec(folder, n=200):
    folder.mkdir(parents=True, exist_ok=True)
    items = {str(i): {"title": f"product {i}"} for i in range(n)}
    inter = {str(u): [str((u * 13 + j) % n) for j in range(6)] for u in range(60)}
    (folder / "Syn.item.json").write_text(json.dumps(items))
    (folder / "Syn.inter.json").write_text(json.dumps(inter))
    np.save(folder / "emb.npy", np.random.default_rng(1).normal(size=(n, 8)).astype(np.float32))


def test_cli_build_json(tmp_path, capsys):
    write_lcrec(tmp_path / "data")
    out = tmp_path / "out" / "Syn.index.json"
    rc = main(["index", "build", "--data", str(tmp_path / "data"), "--out", str(out),
               "--embeddings", str(tmp_path / "data" / "emb.npy"), "--json",
               "rqkmeans.levels=3", "rqkmeans.codebook_size=8"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("items", "levels", "codebook_size", "collision_rate_before", "collisions_after", "seconds", "embed_seconds"):
        assert key in result
    assert result["items"] == 200 and result["codebook_size"] == 8 and result["collisions_after"] == 0
    index = load_index(out).require_unique()
    assert len(index) == 200 and index.num_levels == result["levels"]
    saved = json.loads((tmp_path / "out" / "Syn.index.report.json").read_text())
    assert saved["collisions_after"] == 0 and saved["config"]["rqkmeans"]["levels"] == 3

    rc = main(["index", "stats", str(out), "--json"])
    stats = json.loads(capsys.readouterr().out)
    assert rc == 0 and stats["items"] == 200 and stats["collisions"] == 0


def test_cli_errors_are_clear(tmp_path, capsys, monkeypatch):
    import gream_verl.index.embed as embed

    write_lcrec(tmp_path / "data", n=50)
    rc = main(["index", "build", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "X.index.json"),
               "--embeddings", str(tmp_path / "data" / "emb.npy")])  # 256 codes > 50 items
    assert rc == 1
    assert "codebook_size 256 is larger than the number of items 50" in capsys.readouterr().err
    assert not (tmp_path / "X.index.json").exists()
    calls = []
    monkeypatch.setattr(embed, "embed_items", lambda texts, **kw: calls.append(len(texts)))
    rc = main(["index", "build", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "X.index.json")])
    assert rc == 1 and calls == []  # failed before the model was loaded
    assert "codebook_size 256 is larger than the number of items 50" in capsys.readouterr().err
    rc = main(["index", "build", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "X.index.json"),
               "rqkmeans.levelz=3"])
    assert rc == 1 and "levelz" in capsys.readouterr().err
