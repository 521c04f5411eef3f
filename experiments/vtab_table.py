"""The VTAB-1k results table in the GLoRA paper's format: 19 tasks, group means, average.

Average = mean of the three group means (natural, specialized, structured), as in the paper
("Average accuracy and # params are averaged over group-wise mean values"). PAPER_ROWS holds rows
of the GLoRA paper's table 1 (ViT-B/16 ImageNet-21k) for side-by-side comparison; they are
published numbers, never produced by this code. The paper prints per-task cells and the Average
only: a paper row's Average is the published one (PAPER_AVERAGE; the paper averaged unrounded
accuracies, so its rounded cells can give 0.1 more or less), its group means are computed here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

GROUPS: dict[str, tuple[str, ...]] = {
    "natural": (
        "cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397",
    ),
    "specialized": ("patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"),
    "structured": (
        "clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc", "dsprites_ori",
        "smallnorb_azi", "smallnorb_ele",
    ),
}  # fmt: skip
TASKS: tuple[str, ...] = sum(GROUPS.values(), ())
SHORT = dict(
    zip(
        TASKS,
        [
            "Cifar100",
            "Caltech101",
            "DTD",
            "Flower102",
            "Pets",
            "SVHN",
            "Sun397",
            "Camelyon",
            "EuroSAT",
            "Resisc45",
            "Retinopathy",
            "Clevr-Count",
            "Clevr-Dist",
            "DMLab",
            "KITTI-Dist",
            "dSpr-Loc",
            "dSpr-Ori",
            "sNORB-Azim",
            "sNORB-Ele",
        ],
        strict=True,
    )
)

# Table 4 of the GLoRA paper: supernet learning rate per task.
PAPER_LR: dict[str, float] = {t: 5e-4 for t in TASKS} | {
    "diabetic_retinopathy": 1e-4, "clevr_count": 1e-4, "clevr_dist": 1e-4, "smallnorb_ele": 1e-4,
}  # fmt: skip


def _row(params_m: float, accs: str) -> tuple[float, dict[str, float]]:
    values = [float(v) for v in accs.split()]
    return params_m, dict(zip(TASKS, values, strict=True))


#: The backbone of PAPER_ROWS (and of configs.paper): ViT-B/16, ImageNet-21k.
PAPER_BACKBONE = "vit-b16"

# Table 1 of the GLoRA paper: (trainable params in M, per-task top-1 %).
PAPER_ROWS: dict[str, tuple[float, dict[str, float]]] = {
    "Full": _row(85.8, "68.9 87.7 64.3 97.2 86.9 87.4 38.8 79.7 95.7 84.2 73.9 56.3 58.6 41.7 65.5 57.5 46.7 25.7 29.1"),
    "Linear": _row(0.0, "64.4 85.0 63.2 97.0 86.3 36.6 51.0 78.5 87.5 68.5 74.0 34.3 30.6 33.2 55.4 12.5 20.0 9.6 19.2"),
    "BitFit": _row(0.10, "72.8 87.0 59.2 97.5 85.3 59.9 51.4 78.7 91.6 72.9 69.8 61.5 55.6 32.4 55.9 66.6 40.0 15.7 25.1"),
    "LoRA": _row(0.29, "67.1 91.4 69.4 98.8 90.4 85.3 54.0 84.9 95.3 84.4 73.6 82.9 69.2 49.8 78.5 75.7 47.1 31.0 44.0"),
    "SSF": _row(0.24, "69.0 92.6 75.1 99.4 91.8 90.2 52.9 87.4 95.9 87.4 75.5 75.9 62.3 53.3 80.6 77.3 54.9 29.5 37.9"),
    "RepAdapter": _row(0.22, "72.4 91.6 71.0 99.2 91.4 90.7 55.1 85.3 95.9 84.6 75.9 82.3 68.0 50.4 79.9 80.4 49.2 38.6 41.0"),
    "GLoRA 0.86M": _row(0.86, "76.4 92.9 74.6 99.6 92.5 91.5 57.8 87.3 96.8 88.0 76.0 83.1 67.3 54.5 86.2 83.8 52.9 37.0 41.4"),
    "GLoRA 0.44M": _row(0.44, "76.5 92.3 75.2 99.6 92.3 91.2 57.5 87.3 96.7 88.1 76.1 80.6 67.2 53.4 84.5 83.5 52.8 35.2 40.8"),
    "GLoRA 0.29M": _row(0.29, "76.1 92.7 75.3 99.6 92.4 90.5 57.2 87.5 96.7 88.1 76.1 81.0 66.2 52.4 84.9 81.8 53.3 33.3 39.8"),
}  # fmt: skip

# Table 1 of the GLoRA paper: the published Average of each PAPER_ROWS row.
PAPER_AVERAGE: dict[str, float] = {
    "Full": 68.9, "Linear": 57.6, "BitFit": 65.2, "LoRA": 74.5, "SSF": 75.7, "RepAdapter": 76.1,
    "GLoRA 0.86M": 78.0, "GLoRA 0.44M": 77.6, "GLoRA 0.29M": 77.3,
}  # fmt: skip


def group_means(accs: Mapping[str, float]) -> dict[str, float]:
    """Mean per group over the tasks present, and 'average' = mean of the group means.

    Groups with no task present are omitted (and left out of the average).
    """
    out = {}
    for group, tasks in GROUPS.items():
        vals = [accs[t] for t in tasks if t in accs]
        if vals:
            out[group] = float(np.mean(vals))
    if out:
        out["average"] = float(np.mean(list(out.values())))
    return out


#: How our methods differ from the paper rows of the same name (printed under the table).
METHOD_NOTES = {
    "bitfit": "bitfit (ours) tunes the biases of the adapted layers (q/k/v, out, fc1, fc2: "
    "82,944 scalars on ViT-B/16); the paper's BitFit row tunes every bias, LayerNorms' and the "
    "patch embedding's too (102,912).",
    "ssf": "ssf (ours) scales and shifts the outputs of the adapted layers only (165,888 scalars "
    "on ViT-B/16); the paper's SSF row also after LayerNorms and the patch embedding (0.24M).",
    "lora": "lora (ours) adapts q, k, v, out, fc1 and fc2 (1,327,104 scalars on ViT-B/16 at rank "
    "8, scale 1); the paper's LoRA row (from NOAH) adapts q and v only (0.29M).",
}


def markdown_table(
    ours: Mapping[str, tuple[float, Mapping[str, float]]],
    *,
    with_paper: bool = True,
    method: str | None = None,
) -> str:
    """Rows (name -> (params in M, {task: top-1 %})) as a markdown table in the paper's layout;
    with the paper's rows (their Average the published one), ``PAPER_NOTE`` and ``method``'s
    entry of ``METHOD_NOTES`` under it. A group mean (or average) over only some of its tasks
    gets a '*' and ``PARTIAL_NOTE`` under the table."""
    for name, (_, accs) in ours.items():
        unknown = set(accs) - set(TASKS)
        if unknown:
            raise ValueError(f"row {name!r} has unknown VTAB tasks: {sorted(unknown)}")
    header = ["method", "params (M)", *(SHORT[t] for t in TASKS), "Natural", "Specialized",
              "Structured", "Average"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = dict(ours)
    published = {}
    if with_paper:
        rows |= {f"{k} (paper)": v for k, v in PAPER_ROWS.items()}
        published = {f"{k} (paper)": v for k, v in PAPER_AVERAGE.items()}
    partial = False
    for name, (params_m, accs) in rows.items():
        means = group_means(accs)
        if name in published:
            means["average"] = published[name]
        complete = {g: all(t in accs for t in tasks) for g, tasks in GROUPS.items()}
        complete["average"] = all(complete.values())
        cells = [name, f"{params_m:.2f}"]
        cells += [f"{accs[t]:.1f}" if t in accs else "-" for t in TASKS]
        for key in ("natural", "specialized", "structured", "average"):
            if key not in means:
                cells.append("-")
            else:
                cells.append(f"{means[key]:.1f}" + ("" if complete[key] else "*"))
                partial |= not complete[key]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [PAPER_NOTE] if with_paper else []
    notes += [PARTIAL_NOTE] if partial else []
    note = METHOD_NOTES.get(method or "") if with_paper else None
    notes += [note] if note else []
    return "\n".join([*lines, *(["", *notes] if notes else [])])


#: Under a table with a group mean over only some of the group's tasks.
PARTIAL_NOTE = (
    "\\* a mean over the group's tasks that were run, not all of them: not comparable with the "
    "paper's means."
)

#: Under a table with the paper's rows.
PAPER_NOTE = (
    "(paper) rows: the Average is the paper's; the group means are computed here from the "
    "rounded per-task cells (the paper averaged unrounded accuracies)."
)
