"""Input pipeline: a whole training split on device, and padded evaluation batches.

Training (``TrainBatches``): a VTAB-1k training split is 800 (or 1000) images, so it lives on
device and every batch is a jitted gather. For N examples, batch size B and
S = N // B steps per epoch (drop-last, as the reference's DataLoader):

    epoch, i  = divmod(step, S)
    perm      = jax.random.permutation(fold_in(key(seed), epoch), N)
    batch     = images[perm[i*B : (i+1)*B]], labels[perm[i*B : (i+1)*B]]

so a batch depends on (seed, step) only and resuming at a step needs nothing but that step.
(The permutation is jax.random's; it is stable for a given jax version.)

Evaluation (``eval_batches``): fixed-size batches in order from host memory (or a memory-map),
the last one padded with zeros and ``mask`` False there, so that accuracy is
sum(mask * (argmax(logits) == labels)) / sum(mask); prepared in a background thread and put on
device ``prefetch`` batches ahead.
"""

from __future__ import annotations

import functools
import hashlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from experiments.data.preprocess import Normalization, check_normalization, normalize
from experiments.placement import put_global

T = TypeVar("T")


@functools.partial(jax.jit, static_argnames="num_examples")
def epoch_permutation(
    seed: int | jax.Array, epoch: int | jax.Array, num_examples: int
) -> jax.Array:
    """The order of the examples in ``epoch``: (num_examples,) int32, a permutation."""
    return jax.random.permutation(jax.random.fold_in(jax.random.key(seed), epoch), num_examples)


@functools.partial(
    jax.jit, static_argnames=("num_examples", "batch_size", "normalization", "sharding")
)
def _gather_batch(
    images: jax.Array,
    labels: jax.Array,
    step: jax.Array,
    seed: jax.Array,
    *,
    num_examples: int,
    batch_size: int,
    normalization: Normalization | None,
    sharding: NamedSharding | None,
) -> tuple[jax.Array, jax.Array]:
    """The batch at ``step`` (module docstring), compiled once per shape and setting."""
    epoch, position = jnp.divmod(step, num_examples // batch_size)
    order = epoch_permutation(seed, epoch, num_examples)
    indices = jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)
    batch_images, batch_labels = images[indices], labels[indices]
    if normalization is not None:
        batch_images = normalize(batch_images, normalization)
    if sharding is not None:
        batch_images = jax.lax.with_sharding_constraint(batch_images, sharding)
        batch_labels = jax.lax.with_sharding_constraint(batch_labels, sharding)
    return batch_images, batch_labels


class TrainBatches:
    """Shuffled, drop-last training batches gathered on device (see the module docstring).

    images: (N, H, W, 3), uint8 when ``normalization`` is set (normalised to float32 after the
    gather), else any dtype, batched as given (the pipeline passes uint8 and its backbone's
    forward normalises). mesh / data_axis: shard the stored split and every batch along the
    batch axis over that mesh axis (B must divide by its size; N is padded, never sampled).
    """

    def __init__(
        self,
        images: np.ndarray | jax.Array,
        labels: np.ndarray | jax.Array,
        *,
        batch_size: int,
        seed: int,
        normalization: Normalization | None = None,
        mesh: Mesh | None = None,
        data_axis: str = "data",
    ) -> None:
        num_examples = int(labels.shape[0])
        if images.shape[0] != num_examples:
            raise ValueError(f"{images.shape[0]} images but {num_examples} labels")
        check_seed(seed)
        if not 0 < batch_size <= num_examples:
            raise ValueError(f"batch_size must be in [1, {num_examples}], got {batch_size}")
        if normalization is not None:
            check_normalization(normalization)
            if images.dtype != np.uint8:
                raise ValueError(f"normalization needs uint8 images, got {images.dtype}")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.digest = data_digest(images, labels)
        self.steps_per_epoch = num_examples // batch_size
        self.sharding: NamedSharding | None = None
        if mesh is not None:
            self.sharding = _batch_sharding(mesh, data_axis, batch_size)
            images, labels = _pad_to_multiple(images, labels, mesh.shape[data_axis])
        if self.sharding is None:
            self.images, self.labels = jax.device_put((images, labels))
        else:  # with several processes, each device filled from its own process's copy
            self.images, self.labels = put_global((images, labels), self.sharding)
        self.normalization = normalization

    def batch_indices(self, step: int) -> tuple[int, np.ndarray]:
        """(epoch, indices (B,) into the split) of the batch at ``step``."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = np.asarray(epoch_permutation(self.seed, epoch, self.num_examples))
        return epoch, order[position * self.batch_size : (position + 1) * self.batch_size]

    def batch(self, step: int | jax.Array) -> tuple[jax.Array, jax.Array]:
        """(images (B, H, W, 3), labels (B,)) at ``step``, on device: float32 images when
        ``normalization`` is set, else in the stored dtype."""
        return _gather_batch(
            self.images,
            self.labels,
            jnp.asarray(step, jnp.int32),
            jnp.asarray(self.seed, jnp.int32),
            num_examples=self.num_examples,
            batch_size=self.batch_size,
            normalization=self.normalization,
            sharding=self.sharding,
        )


def data_digest(images: np.ndarray | jax.Array, labels: np.ndarray | jax.Array) -> str:
    """20 hex digits naming a split's examples (dtypes, shapes and every byte): a checkpoint
    records it, so a resume on rewritten data under the same name is refused."""
    digest = hashlib.blake2b(digest_size=10)
    for array in (np.asarray(images), np.asarray(labels)):
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def check_seed(seed: int) -> None:
    """A training seed: it reaches the jitted batch gather as int32, so 0 <= seed < 2**31."""
    if not 0 <= seed < 2**31:
        raise ValueError(f"seed must be in [0, 2**31), got {seed}")


def _batch_sharding(mesh: Mesh, data_axis: str, batch_size: int) -> NamedSharding:
    if data_axis not in mesh.shape:
        raise ValueError(f"mesh has axes {tuple(mesh.shape)}, not {data_axis!r}")
    if batch_size % mesh.shape[data_axis]:
        raise ValueError(
            f"batch_size {batch_size} does not divide over the {mesh.shape[data_axis]} "
            f"devices of mesh axis {data_axis!r}"
        )
    return NamedSharding(mesh, PartitionSpec(data_axis))


def _pad_to_multiple(
    images: np.ndarray | jax.Array, labels: np.ndarray | jax.Array, multiple: int
) -> tuple[np.ndarray, np.ndarray]:
    """Zero rows appended so that N divides by ``multiple`` (never indexed by batches)."""
    padding = -labels.shape[0] % multiple
    pad_images = [(0, padding)] + [(0, 0)] * (images.ndim - 1)
    return np.pad(np.asarray(images), pad_images), np.pad(np.asarray(labels), (0, padding))


class EvalBatch(NamedTuple):
    """images (B, H, W, 3), labels (B,) int32, mask (B,) bool: False on padding rows."""

    images: Any
    labels: Any
    mask: Any


def padded_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    normalization: Normalization | None = None,
) -> Iterator[EvalBatch]:
    """ceil(N / B) host batches in order; the last is zero-padded to B with mask False."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    for start in range(0, labels.shape[0], batch_size):
        batch_images = np.asarray(images[start : start + batch_size])
        batch_labels = np.asarray(labels[start : start + batch_size], np.int32)
        mask = np.ones(batch_labels.shape[0], bool)
        if normalization is not None:
            batch_images = normalize(batch_images, normalization)
        padding = batch_size - batch_labels.shape[0]
        if padding:
            batch_images, batch_labels = _pad_to_multiple(batch_images, batch_labels, batch_size)
            mask = np.pad(mask, (0, padding))
        yield EvalBatch(batch_images, batch_labels, mask)


def prefetch_to_device(
    batches: Iterable[T], *, size: int = 2, sharding: NamedSharding | None = None
) -> Iterator[T]:
    """Iterate ``batches`` in a background thread, each put on device ``size`` items ahead."""
    if size < 1:
        raise ValueError(f"prefetch size must be positive, got {size}")
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(kind: str, item: Any) -> None:
        while not stop.is_set():
            try:
                buffer.put((kind, item), timeout=0.05)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                placed = jax.device_put(batch) if sharding is None else put_global(batch, sharding)
                put("item", placed)
            put("end", None)
        except BaseException as error:  # re-raised in the consumer
            put("error", error)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            kind, item = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def eval_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    normalization: Normalization | None = None,
    prefetch: int = 2,
    sharding: NamedSharding | None = None,
) -> Iterator[EvalBatch]:
    """``padded_batches`` prepared in a background thread and prefetched onto device."""
    host = padded_batches(images, labels, batch_size=batch_size, normalization=normalization)
    return prefetch_to_device(host, size=prefetch, sharding=sharding)
