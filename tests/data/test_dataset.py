import ast
import json
from pathlib import Path

import pytest

from gream_verl.data import leave_one_out, load_dataset
from gream_verl.data.split import Example, train_items
from gream_verl.data.stats import dataset_stats


def test_office_counts(office_dir):
    ds = load_dataset(office_dir)
    assert (len(ds.sequences), len(ds.item_ids), ds.num_interactions) == (4905, 2420, 53258)
    assert ds.items["2"]["title"].startswith("AT&T 210")  # HTML entity decoded


def test_leave_one_out_positions():
    seqs = {"u": [str(i) for i in range(30)], "short": ["1", "2"]}
    train = leave_one_out(seqs, "train", max_history=20)
    assert [e.target for e in train] == [str(i) for i in range(1, 28)]
    assert train[-1].history == tuple(str(i) for i in range(7, 27))
    (valid,) = leave_one_out(seqs, "valid")
    (test,) = leave_one_out(seqs, "test")
    assert (valid.target, test.target) == ("28", "29")
    assert test.history[-1] == "28" and len(test.history) == 20
    assert train_items(seqs) == {"u": [str(i) for i in range(28)]}


def leaks(sequences, split_fn) -> list[str]:
    """Every way a split function lets a held-out position reach training. Each sequence is
    first relabelled position by position (``"item@pos"``) so a repeated item cannot hide a
    leak or fake one; the oracle is the protocol itself: valid = s[-2], test = s[-1], train
    sees only s[:-2]."""
    tagged = {u: [f"{i}@{p}" for p, i in enumerate(s)] for u, s in sequences.items()}
    found = []
    held_out = {u: set(s[-2:]) for u, s in tagged.items() if len(s) >= 3}
    for e in split_fn(tagged, "train"):
        if held_out[e.user] & {*e.history, e.target}:
            found.append(f"train example of user {e.user} uses {sorted(held_out[e.user] & {*e.history, e.target})}")
    for split, position in (("valid", -2), ("test", -1)):
        for e in split_fn(tagged, split):
            if e.target != tagged[e.user][position]:
                found.append(f"{split} target of user {e.user} is {e.target}, not {tagged[e.user][position]}")
    for user, items in train_items(tagged).items():
        if held_out[user] & set(items):
            found.append(f"train_items of user {user} include {sorted(held_out[user] & set(items))}")
    return found


def test_no_valid_or_test_target_reaches_training(office_dir):
    ds = load_dataset(office_dir)
    assert leaks(ds.sequences, leave_one_out) == []
    assert ds.problems["repeated_items"] == 0  # so here item identity = position, checked directly too
    held_out = {(e.user, e.target) for split in ("valid", "test") for e in leave_one_out(ds.sequences, split)}
    trained = {(e.user, i) for e in leave_one_out(ds.sequences, "train") for i in (*e.history, e.target)}
    assert len(held_out) == 2 * len(ds.sequences) and not held_out & trained


def test_the_leak_check_catches_a_leaky_split():
    seqs = {"u": ["a", "b", "a", "c", "d"], "v": ["x", "y", "z"]}

    def leaky(sequences, split):  # trains on s[:-1]: the valid target becomes a train target
        if split != "train":
            return leave_one_out(sequences, split)
        return [Example(u, tuple(s[:i]), s[i]) for u, s in sequences.items() for i in range(1, len(s) - 1)]

    assert leaks(seqs, leave_one_out) == []
    assert leaks(seqs, leaky) == ["train example of user u uses ['c@3']", "train example of user v uses ['y@1']"]


def test_malformed_files_name_the_file(tmp_path):
    bad = tmp_path / "X.inter.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="X.inter.json"):
        load_dataset(tmp_path)
    bad.write_bytes(b'{"1": [1, 2, 3]}\xff')
    with pytest.raises(ValueError, match="UTF-8"):
        load_dataset(tmp_path)
    bad.write_text(json.dumps({"1": 5}))
    with pytest.raises(ValueError, match="user '1'"):
        load_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset(tmp_path / "nowhere")


# ---------------------------------------------------------------- issue 14, defect 5


def write_inter(folder, inter):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "X.inter.json").write_text(json.dumps(inter))
    return folder


@pytest.mark.parametrize("bad", [None, [2, 3], {"a": 1}, True, 1.5, ""])
def test_non_scalar_item_ids_are_rejected_naming_file_and_user(tmp_path, bad):
    folder = write_inter(tmp_path, {"u0": ["1", "2", "3"], "u1": ["1", bad, "3"]})
    with pytest.raises(ValueError, match=r"X\.inter\.json: user 'u1' has item .* at position 1; item ids must be"):
        load_dataset(folder)


def test_empty_inter_file_says_so(tmp_path):
    with pytest.raises(ValueError, match=r"X\.inter\.json: no users \(the file holds an empty object\)"):
        load_dataset(write_inter(tmp_path, {}))
    (tmp_path / "X.inter.json").unlink()
    (tmp_path / "X.user_sequence.txt").write_text("\n\n")
    with pytest.raises(ValueError, match=r"X\.user_sequence\.txt: no users"):
        load_dataset(tmp_path)
    (tmp_path / "X.user_sequence.txt").write_text("u1 a b c\nu2 a b c\nu1 d e f\n")
    with pytest.raises(ValueError, match=r"X\.user_sequence\.txt:3: user 'u1' again \(first on line 1\)"):
        load_dataset(tmp_path)


def test_repeated_items_are_counted_kept_or_dropped(tmp_path, caplog):
    folder = write_inter(tmp_path, {"u1": [1, 1, 1, 1, 1], "u2": ["1", "2", "1", "3"], "u3": ["1", "2", "3"]})
    with caplog.at_level("WARNING"):
        kept = load_dataset(folder)
    assert kept.problems["repeated_items"] == 5 and kept.problems["users_with_repeated_items"] == 2
    assert "5 repeated items in 2 users' sequences" in caplog.text
    assert kept.sequences["u1"] == ["1"] * 5
    # 3 users x 3 items, distinct pairs: u1 {1}, u2 {1,2,3}, u3 {1,2,3} -> 7 of 9
    assert dataset_stats(kept)["sparsity"] == pytest.approx(1 - 7 / 9, abs=1e-6)
    dropped = load_dataset(folder, repeated_items="drop")
    assert dropped.sequences == {"u2": ["1", "2", "3"], "u3": ["1", "2", "3"]}  # u1 left with 1 item
    assert dropped.problems["repeated_items"] == 5 and dropped.problems["short_users_dropped"] == 1
    with pytest.raises(ValueError, match="repeated_items must be one of"):
        load_dataset(folder, repeated_items="ignore")


def test_issue_example_sparsity_is_not_negative(tmp_path):
    s = dataset_stats(load_dataset(write_inter(tmp_path, {"u1": [1, 1, 1, 1, 1]})))
    assert s["sparsity"] == 0.0 and s["problems"]["repeated_items"] == 4


# ---------------------------------------------------------------- issue 14: import cycles


def test_data_modules_have_no_import_cycle():
    """Every import between gream_verl.data modules, top-level or inside a function."""
    package = Path(__file__).resolve().parents[2] / "gream_verl" / "data"
    graph = {}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gream_verl.data."):
                targets.add(node.module.split(".")[2])
            elif isinstance(node, ast.ImportFrom) and node.module == "gream_verl.data":
                targets.update(a.name for a in node.names if (package / f"{a.name}.py").exists())
        graph[path.stem] = targets - {path.stem}

    def cycle_from(node, stack):
        if node in stack:
            return stack[stack.index(node):] + [node]
        for nxt in sorted(graph.get(node, ())):
            found = cycle_from(nxt, stack + [node])
            if found:
                return found
        return None

    cycles = [c for c in (cycle_from(m, []) for m in sorted(graph) if m != "__init__") if c]
    assert cycles == []
