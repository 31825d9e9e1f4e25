"""Office end to end with the real offline MiniLM: title-only vs title+description collisions, and
the published reference index (5 collisions among 2,420 items). Slow: embeds 2,420 texts twice."""

import json

import pytest

from gream_verl.cli import main


@pytest.mark.slow
def test_office_index_title_vs_title_description(office_dir, tmp_path, capsys):
    reference = office_dir / "Office.index.reference.json"
    results = {}
    for fields in ("[title]", "[title,description]"):
        out = tmp_path / fields.strip("[]").replace(",", "+") / "Office.index.json"
        rc = main(["index", "build", "--data", str(office_dir), "--out", str(out), "--reference", str(reference),
                   "--json", f"embedding.fields={fields}", f"embedding.cache_dir={tmp_path / 'emb'}"])
        assert rc == 0
        results[fields] = report = json.loads(capsys.readouterr().out)
        assert report["items"] == 2420 and report["collisions_after"] == 0
        assert report["reference"]["collisions"] == 5
        # balanced 4 x 256 RQ-KMeans on normalised MiniLM: about 4% of items collide before the extra level
        assert 0.0 < report["collision_rate_before"] < 0.15
        assert report["max_collision_group"] <= 8
    with capsys.disabled():
        print({f: {k: r[k] for k in ("collision_rate_before", "collisions_before", "embed_seconds")}
               for f, r in results.items()})
