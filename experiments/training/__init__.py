"""The training library: one trainer for every adapter, sharded, checkpointed, logged.

    result = train(config, forward=..., params=..., adapter=..., train_data=..., workdir=...)

Evaluation helpers (``make_accuracy_fn``, ``make_params_accuracy_fn``, ``stack_eval_batches``,
``make_config_scorer``) score an adapted model, a merged one, or a batch of GLoRA configs at once
for the evolutionary search.
"""

from experiments.training.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    CheckpointUnreadableError,
)
from experiments.training.config import HEAD_PATTERN, OptimConfig, TrainConfig
from experiments.training.evaluate import (
    make_accuracy_fn,
    make_config_scorer,
    make_multi_config_count_fn,
    make_params_accuracy_fn,
    split_batch_size,
    stack_eval_batches,
)
from experiments.training.loop import BatchSource, NonFiniteLossError
from experiments.training.optim import lr_schedule, make_optimizer
from experiments.training.partition import effective_params, join_head, split_head
from experiments.training.sharding import data_mesh, initialize_distributed
from experiments.training.state import TrainState
from experiments.training.step import Forward, classification_loss, make_train_step
from experiments.training.trainer import TrainResult, train

__all__ = [
    "HEAD_PATTERN",
    "BatchSource",
    "CheckpointMismatchError",
    "CheckpointUnreadableError",
    "Checkpointer",
    "Forward",
    "NonFiniteLossError",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "classification_loss",
    "data_mesh",
    "effective_params",
    "initialize_distributed",
    "join_head",
    "lr_schedule",
    "make_accuracy_fn",
    "make_config_scorer",
    "make_multi_config_count_fn",
    "make_params_accuracy_fn",
    "make_optimizer",
    "make_train_step",
    "split_batch_size",
    "split_head",
    "stack_eval_batches",
    "train",
]
