"""Data for the experiments: VTAB-1k (TFDS or NOAH's export), offline tasks, your own images.

split = load_task("cifar", source="tfds", split="train800", image_size=224)
batches = TrainBatches(split.images, split.labels, batch_size=64, seed=0,
                       normalization="imagenet")
images, labels = batches.batch(step)
"""

from experiments.data.base import DataNotFoundError, SplitArrays
from experiments.data.load import SOURCES, load_task
from experiments.data.offline import OFFLINE_TASKS
from experiments.data.pipeline import (
    EvalBatch,
    TrainBatches,
    epoch_permutation,
    eval_batches,
    padded_batches,
    prefetch_to_device,
)
from experiments.data.preprocess import NORMALIZATIONS, normalize, resize_bicubic
from experiments.data.splits import VTAB1K_SPLITS
from experiments.data.vtab import VTAB_TASKS, VtabTask

__all__ = [
    "NORMALIZATIONS",
    "OFFLINE_TASKS",
    "SOURCES",
    "VTAB1K_SPLITS",
    "VTAB_TASKS",
    "DataNotFoundError",
    "EvalBatch",
    "SplitArrays",
    "TrainBatches",
    "VtabTask",
    "epoch_permutation",
    "eval_batches",
    "load_task",
    "normalize",
    "padded_batches",
    "prefetch_to_device",
    "resize_bicubic",
]
