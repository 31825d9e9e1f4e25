"""Recommendation data: loaders, k-core filtering, leave-one-out split, statistics, item text."""

from gream_verl.data.dataset import ITEM_TEXT_FIELDS, RecDataset, load_dataset
from gream_verl.data.split import Example, leave_one_out

__all__ = ["ITEM_TEXT_FIELDS", "RecDataset", "load_dataset", "Example", "leave_one_out"]
