"""Raw Amazon dumps: k-core, ordering, de-duplication, id remapping, bad lines, LC-Rec writer."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gream_verl.data import load_dataset
from gream_verl.data.amazon import category_of, find_amazon_files, load_amazon_raw
from gream_verl.data.kcore import Interactions, build_sequences, kcore_mask
from gream_verl.data.lcrec import save_lcrec

RAW = Path(__file__).resolve().parents[1] / "fixtures" / "amazon_raw"


def test_2014_kcore_order_dedup_and_remap():
    ds = load_amazon_raw(RAW / "2014", k=3)
    # By hand: round 1 drops U4 (2 items) and D, E, F (< 3 users); round 2 drops U3 (left
    # with A, C); then A, B, C each have U1, U2, U6. U5 loses everything.
    # Users U1, U2, U6 -> "0", "1", "2"; ASIN000A/B/C -> "0"/"1"/"2".
    assert ds.sequences == {
        "0": ["0", "1", "2"],  # U1: A@10 B@20 C@30; the repeated A@40 is dropped
        "1": ["1", "0", "2"],  # U2: B@5 and A@5 tie -> file order (B first), then C@15
        "2": ["0", "1", "2"],  # U6: written C, A, B in the file; sorted by time
    }
    assert ds.name == "Toys"
    assert [ds.items[i]["asin"] for i in ("0", "1", "2")] == ["ASIN000A", "ASIN000B", "ASIN000C"]
    assert ds.problems["duplicate_interactions"] == 1
    assert ds.problems["removed_by_kcore"] == 20 - 2 - 1 - 9  # lines - bad - duplicate - kept
    assert ds.problems["bad_review_lines"] == 2  # line 8 (truncated), line 20 (no time)
    assert ds.problems["non_utf8_review_lines"] == 1


def test_2014_meta_python_literals_and_text():
    ds = load_amazon_raw(RAW / "2014", k=3)
    a, b, c = ds.items["0"], ds.items["1"], ds.items["2"]
    assert a["title"] == "Red & Blue Pen"  # HTML entity decoded
    assert a["description"] == "A pen. It writes."  # whitespace collapsed
    assert a["categories"] == "Office Products, Pens, Gifts"  # list of lists, flattened, unique
    assert a["brand"] == "Acme"
    assert a["reviews"] == "Great pen. Writes well & smooth. | Nice. Caf\u00e9 quality"
    assert b["title"] == "Caf\ufffd Mug"  # a non-UTF-8 byte is replaced (documented)
    assert c == {"asin": "ASIN000C"}  # no meta record: empty text
    assert ds.problems["items_without_meta"] == 1
    assert ds.problems["bad_meta_lines"] == 1 and ds.problems["non_utf8_meta_lines"] == 1


def test_reviews_per_item_and_chars():
    assert "reviews" not in load_amazon_raw(RAW / "2014", k=3, reviews_per_item=0).items["0"]
    ds = load_amazon_raw(RAW / "2014", k=3, reviews_per_item=1, review_chars=9)
    assert ds.items["0"]["reviews"] == "Great pen"


def test_2018_json_meta_lists_and_duplicates():
    ds = load_amazon_raw(RAW / "2018" / "Gadgets_5.json", k=3)
    assert ds.name == "Gadgets"
    # A_user, B_user, C_user -> 0, 1, 2 (sorted raw ids); G1, G2, G3 -> 0, 1, 2; D_user dropped
    assert ds.sequences == {u: ["2", "0", "1"] for u in ("0", "1", "2")}
    g1, g2, g3 = (ds.items[i] for i in ("0", "1", "2"))
    assert g1["title"] == "Gadget One"  # the repeated meta record is ignored
    assert g1["description"] == "First line. Second line."  # list joined, tags stripped
    assert g1["categories"] == "Electronics, Gadgets" and g1["brand"] == "Gizmo"
    assert set(g2) == {"asin", "title", "reviews"}  # empty fields are left out
    assert g3["title"] == "Gadget Three & Co"
    assert ds.problems["removed_by_kcore"] == 1


def test_load_dataset_routes_raw_dumps(tmp_path):
    ds = load_dataset(RAW / "2018", k=2)
    assert len(ds.sequences) == 3  # D_user has 1 item, dropped by the 2-core
    (tmp_path / "X.inter.json").write_text(json.dumps({"1": ["1", "2", "3"]}))
    with pytest.raises(ValueError, match="only apply to raw"):
        load_dataset(tmp_path, k=2)


def test_nothing_left_after_kcore_is_a_clear_error():
    with pytest.raises(ValueError, match=r"reviews_Toys_5.json.gz: nothing is left after the 5-core"):
        load_amazon_raw(RAW / "2014")


def test_strict_mode_names_file_and_line():
    with pytest.raises(ValueError, match=r"reviews_Toys_5\.json\.gz:8: malformed line"):
        load_amazon_raw(RAW / "2014", k=3, on_bad_lines="error")
    with pytest.raises(ValueError, match="on_bad_lines"):
        load_amazon_raw(RAW / "2014", k=3, on_bad_lines="ignore")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_amazon_raw(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no Amazon reviews file"):
        load_amazon_raw(tmp_path)
    (tmp_path / "reviews_X.json.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"reviews_X\.json\.gz: cannot read"):
        load_amazon_raw(tmp_path)
    full = gzip.compress(b'{"reviewerID": "u", "asin": "i", "unixReviewTime": 1}\n' * 500)
    (tmp_path / "reviews_X.json.gz").write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match=r"reviews_X\.json\.gz: cannot read \(Compressed file ended"):
        load_amazon_raw(tmp_path)
    (tmp_path / "X_5.json").write_text("")
    with pytest.raises(ValueError, match="several reviews files"):
        load_amazon_raw(tmp_path)
    with pytest.raises(ValueError, match=r"X_5\.json: no valid review lines"):
        load_amazon_raw(tmp_path / "X_5.json")
    with pytest.raises(FileNotFoundError, match="meta file"):
        load_amazon_raw(RAW / "2018" / "Gadgets_5.json", meta=tmp_path / "meta_none.json")


def test_reviews_without_meta_file(tmp_path):
    lines = [json.dumps({"reviewerID": u, "asin": a, "unixReviewTime": t})
             for t, (u, a) in enumerate([(u, a) for u in "xyz" for a in ("p", "q", "r")])]
    with gzip.open(tmp_path / "reviews_Solo.json.gz", "wt") as f:
        f.write("\n".join(lines))
    ds = load_amazon_raw(tmp_path, k=3)
    assert ds.items == {"0": {"asin": "p"}, "1": {"asin": "q"}, "2": {"asin": "r"}}
    assert ds.problems["items_without_meta"] == 3


def test_file_discovery():
    assert category_of(Path("reviews_Office_Products_5.json.gz")) == "Office_Products"
    assert category_of(Path("Musical_Instruments.json")) == "Musical_Instruments"
    reviews, meta = find_amazon_files(RAW / "2014")
    assert (reviews.name, meta.name) == ("reviews_Toys_5.json.gz", "meta_Toys.json.gz")


def test_save_lcrec_roundtrip(tmp_path):
    ds = load_amazon_raw(RAW / "2014", k=3)
    paths = save_lcrec(ds, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["Toys.inter.json", "Toys.item.json"]
    back = load_dataset(paths["inter"])
    assert back.sequences == ds.sequences
    assert back.items == ds.items  # asin and reviews survive the round trip
    with pytest.raises(ValueError, match="bad dataset name"):
        save_lcrec(ds, tmp_path, name="../x")


# ---------------------------------------------------------------- k-core maths


def _naive_kcore(pairs: set[tuple[int, int]], k: int) -> set[tuple[int, int]]:
    while True:
        users = {u: sum(1 for p in pairs if p[0] == u) for u, _ in pairs}
        items = {i: sum(1 for p in pairs if p[1] == i) for _, i in pairs}
        kept = {(u, i) for u, i in pairs if users[u] >= k and items[i] >= k}
        if kept == pairs:
            return pairs
        pairs = kept


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=60, unique=True), st.integers(1, 4))
def test_kcore_matches_naive_definition(pairs, k):
    users = np.array([p[0] for p in pairs], dtype=np.int64)
    items = np.array([p[1] for p in pairs], dtype=np.int64)
    keep, _ = kcore_mask(users, items, k)
    got = {p for p, kept in zip(pairs, keep, strict=True) if kept}
    assert got == _naive_kcore(set(pairs), k)
    if got:  # the result really is a k-core
        us, its = np.array([p[0] for p in got]), np.array([p[1] for p in got])
        assert np.bincount(us)[us].min() >= k and np.bincount(its)[its].min() >= k


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("uvw"), st.sampled_from("abcd"), st.integers(0, 3)), max_size=40))
def test_sequences_are_chronological_unique_and_dense(rows):
    inter = Interactions.from_ids([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    result = build_sequences(inter, k=1)
    assert result.duplicates == len(rows) - len({(r[0], r[1]) for r in rows})
    assert list(result.sequences) == [str(i) for i in range(len(result.sequences))]
    assert result.user_raw == sorted(result.user_raw) and result.item_raw == sorted(result.item_raw)
    for new_user, seq in result.sequences.items():
        raw_user = result.user_raw[int(new_user)]
        mine = [r for r in rows if r[0] == raw_user]
        expected, seen = [], set()  # stable sort by time, keep each item's first row
        for r in sorted(mine, key=lambda r: r[2]):
            if r[1] not in seen:
                seen.add(r[1])
                expected.append(r[1])
        assert [result.item_raw[int(i)] for i in seq] == expected


def test_odd_review_fields_are_bad_lines(tmp_path):
    good = [{"reviewerID": u, "asin": a, "unixReviewTime": 1} for u in "xyz" for a in "pq"]
    odd = [
        {"reviewerID": "w", "asin": "p", "unixReviewTime": 2**70},  # does not fit int64
        {"reviewerID": "w", "asin": "p", "unixReviewTime": True},
        {"reviewerID": "w", "asin": "p", "unixReviewTime": "1"},
        {"reviewerID": "w", "asin": 5, "unixReviewTime": 1},
        {"reviewerID": "", "asin": "p", "unixReviewTime": 1},
        ["a", "list"],
    ]
    (tmp_path / "Odd.json").write_text("\n".join(json.dumps(r) for r in good + odd) + "\n\n")
    ds = load_amazon_raw(tmp_path, k=2)
    assert ds.problems["bad_review_lines"] == len(odd)
    assert ds.num_interactions == 6
