"""A whole VTAB-1k-shaped task end to end, in wall time: supernet training, search, test, merge.

    python -m bench.end_to_end --task data.npz --out e2e.json                 # the paper's recipe
    python -m bench.end_to_end --task data.npz --set train.epochs=100 ...     # any override

The recipe is ``experiments.configs.paper(--like)`` (ViT-B/16 at 224, AdamW, 500 epochs of
train800 at batch 64, the paper's full evolutionary search on val200, test, merged-model check)
with the data replaced by ``--task`` (an images + labels npz, split the VTAB-1k way: train800 /
val200 / test) and, unless ``--set backbone.name=...`` says otherwise, random ViT-B/16 weights
(same architecture and FLOPs as the pretrained checkpoint, which is not available offline):
the time does not depend on the pixels, the accuracy then means nothing and is not reported as
a result. ``pipeline.run`` does everything; the wall time includes loading and resizing the data,
every compilation, training, search, test and the merged-model check.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.config import DataConfig, ExperimentConfig, override
from experiments.configs import paper


def vtab_shaped_config(
    task: str, *, like: str = "cifar", method: str = "glora", sets: Sequence[str] = ()
) -> ExperimentConfig:
    """The paper's recipe for the VTAB-1k task ``like`` on ``task`` (npz), then ``sets``."""
    config = paper(like, method=method)
    config = dataclasses.replace(
        config,
        data=DataConfig(task=task, source="npz"),
        backbone=dataclasses.replace(config.backbone, name="vit-b16-random"),
    )
    return override(config, sets)


def run_end_to_end(config: ExperimentConfig, workdir: Path) -> dict[str, Any]:
    """``pipeline.run`` under a wall clock: its result plus ``end_to_end_seconds``."""
    from experiments import pipeline  # heavy: jax, models

    started = time.perf_counter()
    result = pipeline.run(config, workdir)
    return {**result, "end_to_end_seconds": time.perf_counter() - started}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--task", required=True, help="images + labels npz (source npz)")
    p.add_argument("--like", default="cifar", help="VTAB-1k task whose paper lr is used")
    p.add_argument("--method", default="glora")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workdir", type=Path, default=Path("bench-e2e"))
    p.add_argument("--out", type=Path, default=Path("bench-e2e.json"))
    args = p.parse_args(argv)
    config = vtab_shaped_config(args.task, like=args.like, method=args.method, sets=args.sets)
    result = run_end_to_end(config, args.workdir)
    command = "python -m bench.end_to_end " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.write_text(json.dumps({**result, "command": command}, indent=2, default=str))
    search = result.get("search", {})
    print(
        f"end to end: {result['end_to_end_seconds']:.1f} s (train {result['train_seconds']:.1f} s,"
        f" search {search.get('seconds', 0.0):.1f} s over {search.get('candidates_evaluated', 0)}"
        f" candidates, {result['num_test']} test images); wrote {args.out}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
