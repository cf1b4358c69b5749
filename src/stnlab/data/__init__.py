"""Cluttered MNIST: digit sources, the generator, and strict ``.npz`` files.

Example:
    >>> from stnlab.data import make_dataset, save, load
    >>> ds = make_dataset("40x40", source="embedded", seed=0, sizes=(200, 50, 50))
    >>> ds.x_train.shape
    torch.Size([200, 1, 40, 40])
"""

from stnlab.config.errors import DataError
from stnlab.data.cluttered import VARIANTS, Variant, get_variant, make_cluttered
from stnlab.data.dataset import SPLITS, ClutteredMNIST
from stnlab.data.idx import read_idx, write_idx
from stnlab.data.io import load, save
from stnlab.data.make import dataset_of, describe, file_of, make_dataset, train_size
from stnlab.data.published import PUBLISHED, fetch_published, published_path
from stnlab.data.sources import SOURCES, Digits, Pools, load_pools

__all__ = [
    "PUBLISHED",
    "SOURCES",
    "SPLITS",
    "VARIANTS",
    "ClutteredMNIST",
    "DataError",
    "Digits",
    "Pools",
    "Variant",
    "dataset_of",
    "describe",
    "fetch_published",
    "file_of",
    "get_variant",
    "load",
    "load_pools",
    "make_cluttered",
    "make_dataset",
    "published_path",
    "read_idx",
    "save",
    "train_size",
    "write_idx",
]
