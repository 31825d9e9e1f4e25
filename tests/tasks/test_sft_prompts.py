import re

import pytest

from gream_verl.tasks import prompts

FIELDS = re.compile(r"{(\w+)}")
VALUES = {"history": "<a_1><b_2>", "titles": "1. Pen", "title": "Pen", "description": "Blue pen",
          "index": "<a_1><b_2>"}


@pytest.mark.parametrize("family", ["seqrec", "fusedrec", "item2index", "index2item", "preference"])
def test_each_alignment_family_has_five_distinct_templates(family):
    family_templates = prompts.templates(family)
    assert len(family_templates) >= 5
    assert len({(t.instruction, t.input) for t in family_templates}) == len(family_templates)
    for t in family_templates:
        instruction, input_ = t.render(**VALUES)  # a placeholder outside the documented ones raises
        assert "{" not in instruction + input_ and "}" not in instruction + input_
        used = set(FIELDS.findall(t.instruction + t.input))
        # ``requires``: exactly the item fields the prompt shows or the answer needs, so an item
        # without a description never gets a template that shows or asks for one
        needed = (used | {t.output}) & {"title", "description"}
        assert set(t.requires) == needed, t.id
        if t.output in ("title", "description"):  # the answer is not in the prompt
            assert t.output not in used, t.id


def test_template_choice_is_seeded_and_uses_every_template():
    a = prompts.choose_templates("seqrec", 600, seed=1)
    assert (a == prompts.choose_templates("seqrec", 600, seed=1)).all()
    assert not (a == prompts.choose_templates("seqrec", 600, seed=2)).all()
    assert set(a.tolist()) == set(range(len(prompts.templates("seqrec"))))


def test_unknown_family():
    with pytest.raises(KeyError, match="unknown task family 'nope'"):
        prompts.templates("nope")
