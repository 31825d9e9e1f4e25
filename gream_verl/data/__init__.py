"""Recommendation data: loaders, k-core filtering, leave-one-out split, statistics, item text.

Modules: ``dataset`` (RecDataset, LC-Rec loader, ``load_dataset``), ``amazon`` (raw Amazon
2014/2018 dumps, ``save_lcrec``), ``kcore`` (sorting, de-duplication, k-core, remapping),
``split`` (leave-one-out), ``stats`` (``gream data stats``), ``enrich`` (teacher-LLM item
descriptions), ``commands`` (the ``gream data`` CLI group).
"""

from gream_verl.data.dataset import ITEM_TEXT_FIELDS, RecDataset, load_dataset
from gream_verl.data.split import Example, leave_one_out

__all__ = ["ITEM_TEXT_FIELDS", "RecDataset", "load_dataset", "Example", "leave_one_out"]
