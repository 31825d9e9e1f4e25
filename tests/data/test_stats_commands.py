"""gream data stats / convert / enrich, and the documented handling of bad LC-Rec input."""

import json
import logging
from pathlib import Path

import pytest
from fake_openai import FakeOpenAIServer as FakeTeacherServer

from gream_verl.cli import GreamArgumentParser
from gream_verl.data import leave_one_out, load_dataset
from gream_verl.data.commands import add_commands
from gream_verl.data.enrich import clean_answer, enrich_items, enrichment_messages
from gream_verl.data.stats import dataset_stats
from gream_verl.teacher import TeacherClient, TeacherConfig, TeacherError

RAW = Path(__file__).resolve().parents[1] / "fixtures" / "amazon_raw"


def gream_data(*argv):
    parser = GreamArgumentParser(prog="gream")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", *map(str, argv)])
    return args.func(args)


def write_lcrec(folder: Path, inter, items=None, name="X"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter.json").write_text(json.dumps(inter))
    if items is not None:
        (folder / f"{name}.item.json").write_text(json.dumps(items))
    return folder


# ---------------------------------------------------------------- stats


def test_stats_office(office_dir):
    s = gream_data("stats", office_dir)
    assert (s["users"], s["items"], s["interactions"]) == (4905, 2420, 53258)
    assert s["sparsity"] == pytest.approx(1 - 53258 / (4905 * 2420), abs=1e-6)
    assert s["splits"] == {"train": 53258 - 3 * 4905, "valid": 4905, "test": 4905}
    assert s["sequence_length"]["min"] == 5
    assert s["item_text"]["with_title"] + s["item_text"]["without_title"] == 2420
    assert s["item_text"]["without_title"] == 3


@pytest.mark.parametrize(
    "name,counts",
    [("Beauty", (22363, 12101, 198502)), ("Instruments", (24772, 9922, 206153)), ("Sports", (35598, 18357, 296337))],
)
def test_stats_other_datasets(shared_data, name, counts):
    s = gream_data("stats", shared_data / name)
    assert (s["users"], s["items"], s["interactions"]) == counts
    if name != "Sports":  # no item.json: every item lacks a title
        assert s["item_text"]["without_title"] == counts[1]


def test_split_sizes_match_leave_one_out():
    seqs = {"a": list("abcdefg"), "b": list("xyz"), "c": list("pqrs"), "d": list("mnopqrstuvwxyzab")}
    from gream_verl.data.dataset import RecDataset

    s = dataset_stats(RecDataset("t", seqs))
    assert s["splits"] == {split: len(leave_one_out(seqs, split)) for split in ("train", "valid", "test")}
    assert s["sequence_length"]["median"] == 5.5 and s["sequence_length"]["max"] == 16


def test_stats_on_raw_dump_with_overrides():
    s = gream_data("stats", RAW / "2014", "raw.k=3")
    assert (s["users"], s["items"], s["interactions"]) == (3, 3, 9)
    assert s["problems"]["duplicate_interactions"] == 1
    with pytest.raises(ValueError, match="bad config override"):
        gream_data("stats", RAW / "2014", "raw.kk=3")


# ---------------------------------------------------------------- bad LC-Rec input


def test_short_users_dropped_and_counted(tmp_path, caplog):
    folder = write_lcrec(tmp_path, {"1": ["1", "2", "3"], "2": ["1"], "3": [], "4": ["2", "3", "1", "2"]})
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(folder)
    assert sorted(ds.sequences) == ["1", "4"]
    assert ds.problems["short_users_dropped"] == 2
    assert "dropped 2 users" in caplog.text
    assert gream_data("stats", folder)["problems"]["short_users_dropped"] == 2
    write_lcrec(tmp_path, {"1": ["1"]})
    with pytest.raises(ValueError, match="no user has 3 or more items"):
        load_dataset(folder)


def test_items_missing_from_item_json_get_empty_text(tmp_path, caplog):
    folder = write_lcrec(
        tmp_path, {"1": ["1", "2", "3"], "2": ["1", "2", "9"]},
        {"1": {"title": "One"}, "2": {"title": "", "description": ""}, "3": {"title": "Three", "asin": "B3"}},
    )
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(folder)
    assert ds.problems["items_without_meta"] == 1 and "have no entry" in caplog.text
    assert ds.problems["items_without_text"] == 1  # item 2
    assert ds.item_text("9") == "" and ds.title("9") == "item 9"
    assert ds.items["3"]["asin"] == "B3"  # asin survives loading
    s = dataset_stats(ds)
    assert s["item_text"] == {"with_title": 2, "without_title": 2, "with_description": 0,
                              "without_description": 4, "without_any_text": 2}


def test_bad_item_json_names_the_file(tmp_path):
    folder = write_lcrec(tmp_path, {"1": ["1", "2", "3"]})
    (folder / "X.item.json").write_bytes(b'{"1": {"title": "caf\xe9"}}')
    with pytest.raises(ValueError, match=r"X\.item\.json: not valid UTF-8"):
        load_dataset(folder)
    (folder / "X.item.json").write_text('{"1": "just a string"}')
    with pytest.raises(ValueError, match=r"X\.item\.json: item '1'"):
        load_dataset(folder)


def test_missing_path_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        gream_data("stats", tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"no known dataset format \(no files\)\. Formats tried:\n  lcrec"):
        gream_data("stats", tmp_path)


# ---------------------------------------------------------------- convert


def test_convert_raw_then_stats(tmp_path):
    out = tmp_path / "lcrec"
    r = gream_data("convert", RAW / "2014", out, "--name", "Toys3", "raw.k=3")
    assert (r["users"], r["items"], r["interactions"]) == (3, 3, 9)
    assert sorted(p.name for p in out.iterdir()) == ["Toys3.inter.json", "Toys3.item.json"]
    assert json.loads((out / "Toys3.inter.json").read_text()) == {"0": ["0", "1", "2"], "1": ["1", "0", "2"], "2": ["0", "1", "2"]}
    assert gream_data("stats", out)["interactions"] == 9
    meta = RAW / "2018" / "meta_Gadgets.json"
    r = gream_data("convert", RAW / "2018" / "Gadgets_5.json", tmp_path / "g", "--meta", meta, "raw.k=2")
    assert r["name"] == "Gadgets" and r["users"] == 3


# ---------------------------------------------------------------- enrich


def test_enrichment_prompt_and_answer_cleaning():
    msgs = enrichment_messages({"title": "Pen", "brand": "", "description": "x " * 2000}, ["title", "brand", "description"],
                               max_words=50, max_field_chars=100)
    user = msgs[-1]["content"]
    assert "Title: Pen" in user and "Brand" not in user and "at most 50 words" in user
    assert len(user.split("Description: ")[1]) < 110
    assert enrichment_messages({"title": ""}, ["title"]) is None
    assert clean_answer("<think>hmm\nlet me see</think>\n Description: \"A blue pen.\" ") == "A blue pen."
    assert clean_answer("<think>never closed") == ""


def teacher_reply(messages):
    title = messages[-1]["content"].split("Title: ")[1].split("\n")[0]
    return f"<think>ok</think>Rich text about {title}."


def test_enrich_items_keeps_originals_and_skips_empty(tmp_path):
    items = {"1": {"title": "Pen", "asin": "B1"}, "2": {}, "10": {"title": "Mug"}, "3": {"title": "Cup", "enriched": "old"}}
    with FakeTeacherServer(reply=teacher_reply) as server:
        client = TeacherClient(TeacherConfig(base_url=server.url, model="m", cache_dir=str(tmp_path / "c")))
        out, report = enrich_items(items, client, fields=["title"], limit=2)
    assert list(out) == ["1", "2", "3", "10"]  # numeric id order
    assert out["1"] == {"title": "Pen", "asin": "B1", "enriched": "Rich text about Pen."}
    assert out["2"] == {} and out["3"] == {"title": "Cup", "enriched": "Rich text about Cup."}
    assert out["10"] == {"title": "Mug"}  # beyond --limit
    assert report == {"items": 4, "enriched": 2, "skipped_no_text": 1, "empty_answers": 0, "not_requested": 1}


def test_enrich_command_resumes_from_cache(tmp_path, office_dir):
    out = tmp_path / "enriched" / "Office.item.json"
    args = ["enrich", office_dir, "--out", out, "--limit", 12, "--model", "fake", "enrich.backoff=0.01"]
    with FakeTeacherServer(reply=teacher_reply, fail=lambda n: 500 if n > 5 else None) as broken:
        with pytest.raises(TeacherError, match="re-run to resume"):
            gream_data(*args, "--base-url", broken.url, "--max-concurrency", 1, "enrich.max_retries=0")
    assert not out.exists()  # nothing half-written
    with FakeTeacherServer(reply=teacher_reply) as server:
        r = gream_data(*args, "--base-url", server.url)
    assert r["enriched"] == 12 and r["requests_sent"] == 12 - 5 and r["cache_hits"] == 5
    assert len(server.received) == 7
    written = json.loads(out.read_text())
    original = json.loads((office_dir / "Office.item.json").read_text())
    assert len(written) == 2420 and sum("enriched" in v for v in written.values()) == 12
    assert written["0"]["enriched"] == f"Rich text about {original['0']['title']}."
    assert {k: v for k, v in written["0"].items() if k != "enriched"} == original["0"]
    # the enriched file loads as an LC-Rec item file with the new field
    (out.parent / "Office.inter.json").write_text((office_dir / "Office.inter.json").read_text())
    assert load_dataset(out.parent).items["0"]["enriched"].startswith("Rich text")


def test_enrich_needs_a_teacher(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("GREAM_TEACHER_MODEL", raising=False)
    folder = write_lcrec(tmp_path, {"1": ["1", "2", "3"]}, {"1": {"title": "a"}})
    with pytest.raises(ValueError, match="base_url"):
        gream_data("enrich", folder, "--out", tmp_path / "o.item.json", "--model", "m")


# ---------------------------------------------------------------- bring your own data (issue 16)

BYOD = Path(__file__).resolve().parents[1] / "fixtures" / "byod"


def test_convert_table_with_column_overrides_then_stats(tmp_path):
    table = BYOD / "table"
    r = gream_data("convert", table / "interactions.csv", tmp_path / "shop", "--name", "Shop", "--format", "table",
                   "--meta", table / "products.csv", "raw.k=3", "table.user=customer", "table.item=product",
                   "table.timestamp=when", "table.rating=stars", "table.min_rating=3",
                   "table.item_text.title=name", "table.item_text.brand=maker")
    assert (r["users"], r["items"], r["interactions"]) == (4, 3, 12)
    assert r["problems"]["below_min_rating"] == 2
    items = json.loads((tmp_path / "shop" / "Shop.item.json").read_text())
    assert items["0"] == {"title": "Wooden Train Set", "brand": "Brio", "raw_id": "B0PARENT01"}
    s = gream_data("stats", tmp_path / "shop")
    assert (s["users"], s["items"], s["interactions"]) == (4, 3, 12)
    with pytest.raises(ValueError, match=r"interactions\.csv: no column 'user_id' \(the user column; set table\.user=NAME\)"):
        gream_data("stats", table / "interactions.csv", "raw.k=3")
    with pytest.raises(ValueError, match="bad config override"):
        gream_data("stats", table / "interactions.csv", "table.usr=customer")


def test_stats_and_convert_amazon_2023(tmp_path):
    s = gream_data("stats", BYOD / "amazon2023", "raw.k=3")
    assert (s["users"], s["items"], s["interactions"]) == (4, 3, 12)
    assert s["problems"]["bad_review_lines"] == 2 and s["item_text"]["with_title"] == 2
    r = gream_data("convert", BYOD / "amazon2023_csv", tmp_path / "csv", "raw.k=3", "--format", "amazon2023-csv")
    assert r["name"] == "Toys" and r["interactions"] == 12
    with pytest.raises(ValueError, match=r"Toys\.jsonl:6: malformed line"):
        gream_data("stats", BYOD / "amazon2023", "raw.k=3", "raw.on_bad_lines=error")
