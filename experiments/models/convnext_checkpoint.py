"""Convert torch ConvNeXt state dicts (official or timm names) to our Flax param tree and back.

Torch layouts are re-laid-out, never copied: conv weights OIHW -> HWIO, nn.Linear weights
(out, in) -> (in, out), official GRN gamma/beta (1, 1, 1, C) -> (C,). Name map (s = stage,
b = block; see ``experiments.models.convnext`` for the Flax tree):

    official (facebookresearch)   timm                           ours (B = stage{s}_block{b})
    downsample_layers.0.0         stem.0                         stem_conv
    downsample_layers.0.1         stem.1                         stem_norm
    downsample_layers.{s}.0       stages.{s}.downsample.0        downsample{s}_norm
    downsample_layers.{s}.1       stages.{s}.downsample.1        downsample{s}_conv
    stages.{s}.{b}.dwconv         stages.{s}.blocks.{b}.conv_dw  B/dwconv
    stages.{s}.{b}.norm           stages.{s}.blocks.{b}.norm     B/norm
    stages.{s}.{b}.pwconv1        stages.{s}.blocks.{b}.mlp.fc1  B/pwconv1
    stages.{s}.{b}.grn.gamma/beta ...blocks.{b}.mlp.grn.weight/bias  B/grn/gamma, B/grn/beta
    stages.{s}.{b}.pwconv2        stages.{s}.blocks.{b}.mlp.fc2  B/pwconv2
    stages.{s}.{b}.gamma          stages.{s}.blocks.{b}.gamma    B/layer_scale
    norm                          head.norm                      head_norm
    head                          head.fc                        head

CLI: ``python -m experiments.models.convnext_checkpoint IN OUT.npz`` converts IN (.pth, .npz or
.safetensors with torch names) and writes an npz keyed by '/'-joined Flax paths.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.command_line import path_argument, run_main
from experiments.local_files import open_npz
from experiments.models.convnext import ConvNeXt
from experiments.models.torch_layout import conv_kernel_from_torch, conv_kernel_to_torch
from experiments.models.torch_zip import load_torch_file
from peft_core.adapter import check_tree
from peft_core.atomic_files import write_npz
from peft_core.paths import flatten, unflatten

Array = np.ndarray
StateDict = dict[str, Array]


class _Leaf(NamedTuple):
    """How one torch tensor becomes one Flax leaf, and back."""

    name: str
    to_flax: Callable[[Array], Array]
    to_torch: Callable[[Array], Array]


def _same(x: Array) -> Array:
    return x


_BIAS = _Leaf("bias", _same, _same)
_CONV = {
    "weight": _Leaf("kernel", conv_kernel_from_torch, conv_kernel_to_torch),
    "bias": _BIAS,
}
_LINEAR = {"weight": _Leaf("kernel", lambda w: w.T, lambda k: k.T), "bias": _BIAS}
_NORM = {"weight": _Leaf("scale", _same, _same), "bias": _BIAS}
_GRN_OFFICIAL = {
    name: _Leaf(name, lambda g: g.reshape(-1), lambda g: g.reshape(1, 1, 1, -1))
    for name in ("gamma", "beta")
}
_GRN_TIMM = {"weight": _Leaf("gamma", _same, _same), "bias": _Leaf("beta", _same, _same)}
_LAYER_SCALE = {"gamma": _Leaf("layer_scale", _same, _same)}

_Rule = tuple[str, str, dict[str, _Leaf]]  # (torch module, flax module, torch leaf -> leaf)

OFFICIAL_RULES: list[_Rule] = [
    ("downsample_layers.0.0", "stem_conv", _CONV),
    ("downsample_layers.0.1", "stem_norm", _NORM),
    ("downsample_layers.{s}.0", "downsample{s}_norm", _NORM),
    ("downsample_layers.{s}.1", "downsample{s}_conv", _CONV),
    ("stages.{s}.{b}.dwconv", "stage{s}_block{b}/dwconv", _CONV),
    ("stages.{s}.{b}.norm", "stage{s}_block{b}/norm", _NORM),
    ("stages.{s}.{b}.pwconv1", "stage{s}_block{b}/pwconv1", _LINEAR),
    ("stages.{s}.{b}.grn", "stage{s}_block{b}/grn", _GRN_OFFICIAL),
    ("stages.{s}.{b}.pwconv2", "stage{s}_block{b}/pwconv2", _LINEAR),
    ("stages.{s}.{b}", "stage{s}_block{b}", _LAYER_SCALE),
    ("norm", "head_norm", _NORM),
    ("head", "head", _LINEAR),
]
TIMM_RULES: list[_Rule] = [
    ("stem.0", "stem_conv", _CONV),
    ("stem.1", "stem_norm", _NORM),
    ("stages.{s}.downsample.0", "downsample{s}_norm", _NORM),
    ("stages.{s}.downsample.1", "downsample{s}_conv", _CONV),
    ("stages.{s}.blocks.{b}.conv_dw", "stage{s}_block{b}/dwconv", _CONV),
    ("stages.{s}.blocks.{b}.norm", "stage{s}_block{b}/norm", _NORM),
    ("stages.{s}.blocks.{b}.mlp.fc1", "stage{s}_block{b}/pwconv1", _LINEAR),
    ("stages.{s}.blocks.{b}.mlp.grn", "stage{s}_block{b}/grn", _GRN_TIMM),
    ("stages.{s}.blocks.{b}.mlp.fc2", "stage{s}_block{b}/pwconv2", _LINEAR),
    ("stages.{s}.blocks.{b}", "stage{s}_block{b}", _LAYER_SCALE),
    ("head.norm", "head_norm", _NORM),
    ("head.fc", "head", _LINEAR),
]


def _template_regex(template: str) -> re.Pattern[str]:
    """'stages.{s}.{b}.norm' -> a regex with named integer groups s and b."""
    pattern = re.escape(template)
    for field in ("s", "b"):
        pattern = pattern.replace(re.escape("{" + field + "}"), rf"(?P<{field}>\d+)")
    return re.compile(pattern)


def _rename(
    module: str, leaf: str, rules: list[_Rule], *, reverse: bool
) -> tuple[str, _Leaf] | None:
    """Map (module, leaf) through the first rule that matches; None when no rule does."""
    for torch_module, flax_module, leaves in rules:
        source, target = (flax_module, torch_module) if reverse else (torch_module, flax_module)
        match = _template_regex(source).fullmatch(module)
        if not match:
            continue
        for torch_leaf, spec in leaves.items():
            if leaf == (spec.name if reverse else torch_leaf):
                renamed_leaf = torch_leaf if reverse else spec.name
                sep = "." if reverse else "/"
                return f"{target.format(**match.groupdict())}{sep}{renamed_leaf}", spec
    return None


def rename_state_dict(state_dict: Mapping[str, Array]) -> dict[str, Array]:
    """Torch names and layouts -> flat {flax path: array}; no shape checks (see ``convert``).

    Raises ValueError listing every key no rule knows, and any two keys naming the same leaf.
    """
    flat: dict[str, Array] = {}
    unexpected, duplicates = [], []
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition(".")
        renamed = _rename(module, leaf, OFFICIAL_RULES + TIMM_RULES, reverse=False)
        if renamed is None:
            unexpected.append(key)
            continue
        path, spec = renamed
        if path in flat:
            duplicates.append(f"{key} -> {path}")
        flat[path] = np.asarray(spec.to_flax(np.asarray(value)))
    if unexpected or duplicates:
        raise ValueError(
            "cannot convert the ConvNeXt state dict:"
            + _listing("unexpected keys (no ConvNeXt name rule)", unexpected)
            + _listing("keys naming the same Flax leaf", duplicates)
        )
    return flat


def to_torch_state_dict(params: Mapping[str, object]) -> dict[str, Array]:
    """Our Flax params -> a state dict with the official names and torch layouts."""
    state_dict: dict[str, Array] = {}
    for path, value in flatten(params).items():
        module, _, leaf = path.rpartition("/")
        renamed = _rename(module, leaf, OFFICIAL_RULES, reverse=True)
        if renamed is None:
            raise ValueError(f"param {path!r} is not part of a ConvNeXt tree")
        key, spec = renamed
        state_dict[key] = np.asarray(spec.to_torch(np.asarray(value)))
    return state_dict


def check_against(flat: Mapping[str, Array], model: ConvNeXt) -> None:
    """ValueError listing missing, unexpected and mis-shaped leaves of ``flat`` vs ``model``."""
    images = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    expected = jax.eval_shape(model.init, jax.random.key(0), images)["params"]
    check_tree(
        expected,
        unflatten(flat),
        what=f"checkpoint for ConvNeXt(depths={model.depths}, dims={model.dims}, "
        f"version={model.version}, num_classes={model.num_classes})",
    )


def convert(state_dict: Mapping[str, Array], model: ConvNeXt) -> dict[str, object]:
    """Torch state dict -> nested Flax params for ``model`` (float32), shape-checked."""
    flat = rename_state_dict(state_dict)
    check_against(flat, model)
    return unflatten({p: v.astype(np.float32) for p, v in flat.items()})


def infer_model(flat: Mapping[str, Array]) -> ConvNeXt:
    """The ConvNeXt whose tree ``flat`` (flax paths) is: depths, dims, version, num_classes."""
    blocks = [re.fullmatch(r"stage(\d+)_block(\d+)/dwconv/kernel", p) for p in flat]
    found = [(int(m[1]), int(m[2])) for m in blocks if m]
    if not found:
        raise ValueError("no stage{s}_block{b}/dwconv/kernel leaves: not a ConvNeXt checkpoint")
    n_stages = max(s for s, _ in found) + 1
    depths = tuple(max(b for s, b in found if s == stage) + 1 for stage in range(n_stages))
    dims = tuple(int(flat[f"stage{s}_block0/dwconv/kernel"].shape[-1]) for s in range(n_stages))
    version = 2 if "stage0_block0/grn/gamma" in flat else 1
    head = flat.get("head/kernel")
    num_classes = 0 if head is None else int(head.shape[-1])
    return ConvNeXt(depths=depths, dims=dims, version=version, num_classes=num_classes)


def read_state_dict(path: str | Path) -> dict[str, Array]:
    """Flat {name: array} from .pth/.pt (torch, read without torch), .npz or .safetensors.

    A checkpoint that wraps its weights as {"model": ...} or {"state_dict": ...} is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.suffix in (".pth", ".pt", ".bin"):
        loaded = load_torch_file(path)
    elif path.suffix == ".npz":
        with open_npz(path) as npz:
            loaded = {k: npz[k] for k in npz.files}
    elif path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError as e:
            raise ImportError(
                f"reading {path} needs the optional 'safetensors' package (pip install "
                "safetensors), or convert it to .npz first"
            ) from e
        loaded = load_file(str(path))
    else:
        raise ValueError(
            f"{path}: unknown checkpoint suffix {path.suffix!r} (.pth, .npz, .safetensors)"
        )
    for wrapper in ("model", "state_dict"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping):  # torch.save of one tensor, a list, ...
        raise ValueError(
            f"{path}: expected a state dict (names to tensors), got {type(loaded).__name__}"
        )
    bad = [k for k, v in loaded.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise ValueError(f"{path}: entries that are not tensors: {bad[:10]}")
    return dict(loaded)


def load_convnext_params(path: str | Path, model: ConvNeXt) -> dict[str, object]:
    """Params for ``model`` from a torch-named checkpoint or an npz written by ``main``.

    Our npz files are told apart by their keys: Flax paths contain '/', torch names never do.
    """
    state_dict = read_state_dict(path)
    if all("/" in k for k in state_dict):
        check_against(state_dict, model)
        return unflatten({p: v.astype(np.float32) for p, v in state_dict.items()})
    return convert(state_dict, model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.models.convnext_checkpoint", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "source", type=path_argument, help="torch ConvNeXt weights: .pth, .npz, .safetensors"
    )
    parser.add_argument("out", type=path_argument, help="npz to write, keyed by Flax param paths")
    args = parser.parse_args(argv)
    out = args.out if args.out.suffix == ".npz" else args.out.with_name(args.out.name + ".npz")
    flat = rename_state_dict(read_state_dict(args.source))
    model = infer_model(flat)
    check_against(flat, model)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {p: v.astype(np.float32) for p, v in flat.items()}
    write_npz(out, arrays)  # as np.savez names it: ".npz" added where missing
    print(
        f"wrote {out}: ConvNeXt V{model.version} depths={model.depths} dims={model.dims} "
        f"num_classes={model.num_classes}"
    )
    return 0


def _listing(title: str, items: list[str]) -> str:
    if not items:
        return ""
    shown = "\n    ".join(items[:20]) + (
        f"\n    ... {len(items) - 20} more" if len(items) > 20 else ""
    )
    return f"\n  {title} ({len(items)}):\n    {shown}"


if __name__ == "__main__":
    run_main(main, resume_hint="rerun the same command (the npz is written whole or not at all)")
