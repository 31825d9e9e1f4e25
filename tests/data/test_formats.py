"""Bring your own data: Amazon Reviews 2023 (raw and benchmark CSVs), plain tables, detection.

Fixtures: tests/fixtures/byod (see make_fixtures.py there for the log, by hand). With k = 3:
users "007" (U5), AGU1, AGU2, AGU3 -> "0".."3" (sorted raw ids; AGU4 is removed); items
B0PARENT01..03 -> "0".."2" (B0PARENT04 is removed).
  U5 "0": P1@1 P2@2 P3@3                  -> 0 1 2
  U1 "1": P1@10 P2@20 P3@30 (P1@40 repeat) -> 0 1 2
  U2 "2": P2@15 = P1@15 (file order), P3@25 -> 1 0 2
  U3 "3": P1@10, P3@20 = P2@20 (file order) -> 0 2 1
"""

import csv
import gzip
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gream_verl.data import leave_one_out, load_dataset
from gream_verl.data.dataset import detect_format
from gream_verl.data.table import TableColumns

BYOD = Path(__file__).resolve().parents[1] / "fixtures" / "byod"
EXPECTED = {"0": ["0", "1", "2"], "1": ["0", "1", "2"], "2": ["1", "0", "2"], "3": ["0", "2", "1"]}
ITEM_IDS = ["B0PARENT01", "B0PARENT02", "B0PARENT03"]
TABLE = TableColumns(user="customer", item="product", timestamp="when", rating="stars", min_rating=3)


@pytest.mark.parametrize(
    "path,fmt,options",
    [
        (BYOD / "amazon2023", "amazon2023", {}),
        (BYOD / "amazon2023" / "Toys.jsonl", "amazon2023", {}),
        (BYOD / "amazon2023_csv", "amazon2023-csv", {}),
        (BYOD / "amazon2018", "amazon2018", {}),
        (BYOD / "table" / "interactions.csv", "table", {"table": TABLE}),
        (BYOD / "table" / "interactions.tsv", "table", {"table": TABLE}),
        (BYOD / "table" / "interactions.parquet", "table", {"table": TABLE}),
    ],
)
def test_every_format_reaches_the_same_dataset(path, fmt, options):
    assert detect_format(path) == fmt
    ds = load_dataset(path, k=3, **options)
    assert ds.sequences == EXPECTED
    id_field = "raw_id" if fmt == "table" else "asin"
    assert [ds.items[i][id_field] for i in ("0", "1", "2")] == ITEM_IDS
    assert ds.problems["duplicate_interactions"] == (0 if fmt == "amazon2023-csv" else 1)


def test_2023_quirks_meta_text_reviews_and_bad_lines():
    ds = load_dataset(BYOD / "amazon2023", k=3, name="Toys23")
    p1, p2, p3 = (ds.items[i] for i in ("0", "1", "2"))
    assert p1["title"] == "Wooden Train Set"
    assert p1["description"] == "A classic set. Ages 3+. Features: 20 pieces; Solid beech"  # lists joined
    assert (p1["brand"], p1["categories"]) == ("Brio", "Toys & Games, Trains")  # store; details unused
    assert p1["reviews"] == "P1 review. Liked P1. Would buy again. | P1 review. Liked P1. Would buy again."
    assert set(p2) == {"asin", "reviews"}  # no meta record for P2
    assert p3["title"] == "Kite & String" and "brand" not in p3  # store null, empty lists left out
    assert ds.problems["items_without_meta"] == 1
    assert ds.problems["bad_review_lines"] == 2  # line 6: no timestamp; line 10: timestamp "yesterday"
    assert ds.problems["removed_by_kcore"] == 3
    with pytest.raises(ValueError, match=r"Toys\.jsonl:6: malformed line \(needs user_id, parent_asin and an integer timestamp"):
        load_dataset(BYOD / "amazon2023", k=3, on_bad_lines="error")


def test_2023_gzipped_without_meta(tmp_path):
    with open(BYOD / "amazon2023" / "Toys.jsonl", "rb") as src, gzip.open(tmp_path / "Toys.jsonl.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    ds = load_dataset(tmp_path, k=3)
    assert ds.sequences == EXPECTED and ds.name == "Toys"
    assert ds.problems["items_without_meta"] == 3 and set(ds.items["0"]) == {"asin", "reviews"}


def test_2023_benchmark_split_is_reproduced_by_leave_one_out():
    ds = load_dataset(BYOD / "amazon2023_csv", k=3)
    asin = {i: f["asin"] for i, f in ds.items.items()}
    users = {"1": "AGU1", "2": "AGU2", "3": "AGU3"}  # "007" lost its last item (P4) to the 3-core
    for split in ("valid", "test"):
        with open(BYOD / "amazon2023_csv" / f"Toys.{split}.csv") as f:
            released = {row["user_id"]: row["parent_asin"] for row in csv.DictReader(f)}
        ours = {users[e.user]: asin[e.target] for e in leave_one_out(ds.sequences, split) if e.user in users}
        assert ours == {u: released[u] for u in users.values()}  # AGU3's valid and test share a timestamp
    assert [asin[i] for i in ds.sequences["0"]][-1] == "B0PARENT03" != released["007"]
    assert ds.items["0"]["title"] == "Wooden Train Set"  # meta_Toys.jsonl beside the CSVs


def test_table_columns_items_and_rating_threshold(tmp_path):
    for name in ("interactions.csv", "products.csv"):  # a folder: the item table lacks the user column
        shutil.copy(BYOD / "table" / name, tmp_path)
    ds = load_dataset(tmp_path, k=3, table=TableColumns(
        user="customer", item="product", timestamp="when", rating="stars", min_rating=3,
        item_text={"title": "name", "description": "about", "brand": "maker"}))
    assert ds.problems["below_min_rating"] == 2  # AGU4's 2-star P1 and AGU1's 1-star P9
    assert ds.sequences == EXPECTED  # "007" kept as text, not the number 7
    assert ds.items["0"] == {"raw_id": "B0PARENT01", "title": "Wooden Train Set",
                             "description": "A classic set. Ages 3+.", "brand": "Brio"}  # first row kept
    assert ds.items["1"] == {"raw_id": "B0PARENT02", "title": "Puzzle"}
    assert ds.items["2"] == {"raw_id": "B0PARENT03"} and ds.problems["items_without_meta"] == 1
    with pytest.raises(ValueError, match=r"table: expected one table with the user column 'customer', found "
                                         r"interactions\.csv, interactions\.parquet, interactions\.tsv; pass the file"):
        load_dataset(BYOD / "table", k=3, table=TABLE)
    tsv = load_dataset(BYOD / "table" / "interactions.tsv", k=3, meta=BYOD / "table" / "products.csv",
                       table={**TABLE.__dict__, "item_text": {"description": ["name", "maker"]}})
    assert tsv.items["0"]["description"] == "Wooden Train Set, Brio" and "title" not in tsv.items["0"]
    auto = load_dataset(BYOD / "table" / "interactions.tsv", k=3, meta=BYOD / "table" / "products.csv", table=TABLE)
    assert auto.items["0"] == {"raw_id": "B0PARENT01"}  # no column is named like a text field


def test_table_bad_input_names_file_row_and_column(tmp_path):
    with pytest.raises(ValueError, match=r"interactions\.csv: no column 'user_id' \(the user column; set table\.user=NAME\)\. Columns: customer, product, when, stars"):
        load_dataset(BYOD / "table" / "interactions.csv", k=3)
    bad = tmp_path / "log.csv"
    bad.write_text("customer,product,when\nu1,i1,2023-01-01\nu1,i2,not a date\nu1,,2023-01-03\n")
    columns = TableColumns(user="customer", item="product", timestamp="when")
    with pytest.raises(ValueError, match=r"log\.csv: row 2, column 'when': bad value 'not a date'"):
        load_dataset(bad, k=1, min_length=0, table=columns, on_bad_lines="error")
    ds = load_dataset(bad, k=1, min_length=0, table=columns)  # warn: both bad rows skipped
    assert ds.problems["bad_table_rows"] == 2 and ds.sequences == {"0": ["0"]}
    bad.write_text("customer,product,when\nu1,i1,5\nu1,i2\n")
    with pytest.raises(ValueError, match=r"log\.csv: cannot read the table: malformed row 'u1,i2' \(expected 3 fields, got 2\)"):
        load_dataset(bad, k=1, table=columns)
    with pytest.raises(ValueError, match=r"products\.csv: no column 'nom' \(named in table\.item_text\.title\)"):
        load_dataset(BYOD / "table" / "interactions.csv", k=3, meta=BYOD / "table" / "products.csv",
                     table=TableColumns(user="customer", item="product", timestamp="when", item_text={"title": "nom"}))
    pq.write_table(pa.table({"user_id": ["a"], "item_id": [[1, 2]], "timestamp": [1]}), tmp_path / "lists.parquet")
    with pytest.raises(ValueError, match=r"lists\.parquet: column 'item_id' holds list<element: int64> values; ids must be text or integers"):
        load_dataset(tmp_path / "lists.parquet", k=1)


def test_benchmark_csv_bad_row_names_the_file(tmp_path):
    shutil.copytree(BYOD / "amazon2023_csv", tmp_path / "csv")
    test_csv = tmp_path / "csv" / "Toys.test.csv"
    test_csv.write_text(test_csv.read_text() + "AGU7,B0PARENT01,5.0,soon,\n")
    with pytest.raises(ValueError, match=r"Toys\.test\.csv: row 6, column 'timestamp': bad value 'soon'"):
        load_dataset(tmp_path / "csv", k=3, on_bad_lines="error")


def test_detection_by_content_and_clear_failure(tmp_path):
    shutil.copy(BYOD / "amazon2023" / "Toys.jsonl", tmp_path / "export.txt")  # the name says nothing
    assert detect_format(tmp_path / "export.txt") == "amazon2023"
    (tmp_path / "export.txt").unlink()
    (tmp_path / "notes.txt").write_text("hello\n")
    shutil.copy(BYOD / "amazon2023" / "meta_Toys.jsonl", tmp_path)
    with pytest.raises(ValueError, match=r"no known dataset format \(meta_Toys\.jsonl: meta; notes\.txt: unrecognised\)\. "
                                         r"Formats tried:\n  lcrec: .*\n  amazon2018: .*\n  amazon2023: "):
        load_dataset(tmp_path)
    with pytest.raises(ValueError, match=r"unknown format 'amazon2020'; formats: auto, lcrec"):
        load_dataset(BYOD / "amazon2023", format="amazon2020")
    with pytest.raises(ValueError, match=r"options \['reviews_per_item'\] do not apply to format table"):
        load_dataset(BYOD / "table", format="table", reviews_per_item=1)


def test_small_chunks_give_the_same_result_and_line_numbers(monkeypatch, tmp_path):
    """The reader streams fixed-size chunks cut at line ends; a file many chunks long (here
    1000 bytes, about 3 lines each) loads exactly like one chunk."""
    import gream_verl.data.jsonlines as jsonlines

    whole = load_dataset(BYOD / "amazon2023", k=3)
    monkeypatch.setattr(jsonlines, "CHUNK_BYTES", 1000)
    chunked = load_dataset(BYOD / "amazon2023", k=3)
    assert (chunked.sequences, chunked.items, chunked.problems) == (whole.sequences, whole.items, whole.problems)
    lines = (BYOD / "amazon2023" / "Toys.jsonl").read_text().splitlines(keepends=True)
    del lines[5]  # the first bad line: the text-timestamp line is now line 9, chunks away from the start
    (tmp_path / "Toys.jsonl").write_text("".join(lines))
    with pytest.raises(ValueError, match=r"Toys\.jsonl:9: malformed line \(needs user_id, parent_asin and an integer timestamp"):
        load_dataset(tmp_path, k=3, on_bad_lines="error")


@pytest.mark.slow
def test_office_written_as_2023_and_as_a_table_converts_back_to_itself(office_dir, tmp_path):
    """Office (LC-Rec) written out as raw 2023 files and as a table (ms timestamps, variants,
    repeats, shuffled lines, ISO dates); converting each must give Office's sequences again."""
    import sys

    sys.path.insert(0, str(BYOD))
    from office_as_raw import write_2023, write_table

    office = load_dataset(office_dir)
    ds23 = load_dataset(write_2023(office_dir, tmp_path / "amazon2023"))
    assert ds23.sequences == office.sequences
    assert ds23.problems["duplicate_interactions"] == len([u for u in office.sequences if int(u) % 7 == 0])
    same_title = sum(ds23.items[i].get("title", "") == office.items[i].get("title", "") for i in office.items)
    assert same_title >= 0.99 * len(office.items)
    table = load_dataset(write_table(office_dir, tmp_path / "table"), table=TableColumns(
        user="customer", item="product", timestamp="when", item_text={"title": "name", "brand": "maker"}))
    assert table.sequences == office.sequences
    assert sum(table.items[i].get("brand", "") == office.items[i].get("brand", "") for i in office.items) == len(office.items)


def test_clean_text_unescapes_once():
    from gream_verl.data.rec_dataset import clean_text

    assert clean_text("Universal&amp;reg;") == "Universal&reg;"  # the source text, escaped once
    assert clean_text(["Universal&amp;reg;", " ", "A &amp;  B"]) == "Universal&reg;, A & B"


def test_id_codes_merge_keeps_codes_stable(monkeypatch):
    """Codes are dense, in order of first appearance, and unchanged by the periodic merges."""
    import pyarrow as pa

    from gream_verl.data.raw import IdCodes

    monkeypatch.setattr(IdCodes, "MIN_MERGE", 2)  # merge after almost every batch
    batches = [["b", "a", "b"], ["c", "a"], ["d", "e", "c", "f"], ["a"], ["g", "h", "i", "j", "b"]]
    ids = IdCodes()
    for batch in batches:
        ids.add(pa.array(batch))
    codes, names = ids.codes_and_names()
    flat = [x for batch in batches for x in batch]
    first_seen = list(dict.fromkeys(flat))  # the oracle: order of first appearance
    assert names.to_pylist() == first_seen
    assert codes.tolist() == [first_seen.index(x) for x in flat]
