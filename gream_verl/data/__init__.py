"""Recommendation data: loaders, k-core filtering, leave-one-out split, statistics, item text.

Modules: ``rec_dataset`` (RecDataset, the one in-memory form), ``dataset`` (``load_dataset``:
any format, detected by ``detect``), one loader per format: ``lcrec`` (LC-Rec folders, and
the writer ``save_lcrec``), ``amazon`` (Amazon 2014/2018 dumps), ``amazon2023`` (Amazon
Reviews 2023), ``table`` (CSV/TSV/Parquet interaction tables); shared by the raw loaders:
``jsonlines`` (streaming JSON-lines reading), ``raw`` (accumulation and assembly), ``kcore``
(sorting, de-duplication, k-core, remapping); then ``split`` (leave-one-out), ``stats``
(``gream data stats``), ``enrich`` (teacher-LLM item descriptions), ``commands`` (the
``gream data`` CLI group).
"""

from gream_verl.data.dataset import ITEM_TEXT_FIELDS, RecDataset, load_dataset
from gream_verl.data.split import Example, leave_one_out

__all__ = ["ITEM_TEXT_FIELDS", "RecDataset", "load_dataset", "Example", "leave_one_out"]
