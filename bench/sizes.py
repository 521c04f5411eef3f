"""The two benchmark sizes: "full" (the issue's ViT-B/16 setting, for a GPU) and "tiny" (CPU test).

full: ViT-B/16 at 224x224 (random weights: the same architecture and FLOPs as the pretrained
one), bf16 compute, train batches 64 and 256, inference batches 1, 64 and 256, val200 for the
search with the paper's search settings, ConvNeXt-T for the convolution rows.
tiny: a one-block ViT-Ti/16 and the test ConvNeXt at 32x32, batch 4, two tiny generations.
"""

from __future__ import annotations

import dataclasses

from bench.timing import TimingSettings
from experiments.config import SearchConfig


@dataclasses.dataclass(frozen=True)
class BenchSize:
    """Everything that differs between a GPU run and the CPU smoke run.

    vit: an ``experiments.backbones`` name, or "test" (one-block ViT-Ti/16);
    convnext: a ConvNeXt variant ("tiny", ...) or "test" (two one-block stages, 8/16 channels).
    val_size / eval_batch: the search split (val200) and its eval batch size.
    search: the evolutionary-search settings (population, generations, ...; budget excludes
    the head). configs_per_call: subnets per vmapped eval call.
    e2e_test_size / e2e_sets: the end-to-end row's test split size and its overrides of the
    paper's recipe (none for "full": the whole recipe); its search settings are ``search``.
    """

    name: str
    vit: str
    convnext: str
    image_size: int
    num_classes: int
    train_batches: tuple[int, ...]
    infer_batches: tuple[int, ...]
    conv_batches: tuple[int, ...]
    timing: TimingSettings
    val_size: int
    eval_batch: int
    search: SearchConfig
    configs_per_call: int
    torch_model: str
    torch_depth: int | None
    e2e_test_size: int = 10_000
    e2e_sets: tuple[str, ...] = ()

    def with_window(self, window: int | None) -> BenchSize:
        """This size with ``window`` calls per timed sample (None: unchanged)."""
        if window is None:
            return self
        return dataclasses.replace(self, timing=dataclasses.replace(self.timing, window=window))


SIZES: dict[str, BenchSize] = {
    "full": BenchSize(
        name="full",
        vit="vit-b16-random",
        convnext="tiny",
        image_size=224,
        num_classes=100,
        train_batches=(64, 256),
        infer_batches=(1, 64, 256),
        conv_batches=(128,),
        timing=TimingSettings(warmup=5, repeats=10, input_sets=3, window=5, min_window_s=0.05),
        val_size=200,
        eval_batch=100,
        search=SearchConfig(),
        configs_per_call=10,
        torch_model="vit_base_patch16_224",
        torch_depth=None,
    ),
    "tiny": BenchSize(
        name="tiny",
        vit="test",
        convnext="test",
        image_size=32,
        num_classes=10,
        train_batches=(4,),
        infer_batches=(1, 4),
        conv_batches=(4,),
        timing=TimingSettings(warmup=1, repeats=2, input_sets=2, window=2),
        val_size=8,
        eval_batch=4,
        search=SearchConfig(
            param_budget=10**9,
            population=4,
            top_k=2,
            num_mutations=2,
            num_crossovers=2,
            generations=2,
        ),  # fmt: skip
        configs_per_call=2,
        torch_model="vit_tiny_patch16_224",
        torch_depth=2,
        e2e_test_size=40,
        e2e_sets=(
            "backbone.name=vit-ti16-random",
            "backbone.image_size=32",
            "backbone.scan=true",
            "train.total_steps=2",
            "train.optim.warmup_epochs=0",  # two steps: no warm-up
            "search.population=4",
            "search.top_k=2",
            "search.num_mutations=2",
            "search.num_crossovers=2",
            "search.generations=2",
            "search.param_budget=1000000",
        ),  # fmt: skip
    ),
}
