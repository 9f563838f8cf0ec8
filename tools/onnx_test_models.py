#!/usr/bin/env python3
"""Write small ONNX models, one per importer feature, for ulayer's importer tests.

    onnx_test_models.py OUT_DIR

Writes OUT_DIR/<name>.onnx and OUT_DIR/models.json ([{"name", "file", "opset"}]). The models
are built with the `onnx` helper API, checked with onnx.checker, and have deterministic
weights (numpy default_rng(0)). The Rust test (device-agent/tests/onnx_import.rs) checks what
each imports to, and that onnxruntime computes the same on the model and on ulayer's export of
the imported graph.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(0)
MODELS = {}


def model(name, opset=13):
    def register(build):
        MODELS[name] = (build, opset)
        return build

    return register


def w(*shape, positive=False):
    a = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(a) + 0.5 if positive else a


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def graph(name, nodes, inputs, outputs, inits=()):
    return helper.make_graph(nodes, name, [vi(n, s) for n, s in inputs], [vi(n, None) for n in outputs], list(inits))


# --- Convolution -----------------------------------------------------------------------------


@model("conv_basic")
def _():
    n = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return graph("conv_basic", [n], [("x", [1, 3, 6, 6])], ["y"], [init("w", w(4, 3, 3, 3)), init("b", w(4))])


def conv_auto_pad(mode):
    n = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[4, 3], strides=[2, 2], auto_pad=mode)
    return graph("conv_" + mode.lower(), [n], [("x", [1, 2, 7, 8])], ["y"], [init("w", w(3, 2, 4, 3))])


model("conv_same_upper")(lambda: conv_auto_pad("SAME_UPPER"))
model("conv_same_lower")(lambda: conv_auto_pad("SAME_LOWER"))
model("conv_valid")(lambda: conv_auto_pad("VALID"))


@model("conv_group_dilation")
def _():
    grouped = helper.make_node("Conv", ["x", "w1"], ["g"], name="grouped", group=2, dilations=[2, 2], pads=[2, 1, 2, 3])
    depthwise = helper.make_node("Conv", ["g", "w2", "b2"], ["y"], name="depthwise", group=6, strides=[2, 1], pads=[1, 1, 1, 1])
    inits = [init("w1", w(6, 2, 3, 3)), init("w2", w(6, 1, 3, 3)), init("b2", w(6))]
    return graph("conv_group_dilation", [grouped, depthwise], [("x", [1, 4, 9, 9])], ["y"], inits)


@model("batchnorm")
def _():
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1])
    bn = helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"], name="bn", epsilon=1e-3)
    inits = [init("w", w(5, 3, 1, 1)), init("s", w(5)), init("bb", w(5)), init("m", w(5)), init("v", w(5, positive=True))]
    return graph("batchnorm", [conv, bn], [("x", [1, 3, 4, 4])], ["y"], inits)


# --- Activations -----------------------------------------------------------------------------


@model("relu")
def _():
    return graph("relu", [helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", [1, 2, 3, 3])], ["y"])


@model("clip_opset10", opset=10)
def _():
    n = helper.make_node("Clip", ["x"], ["y"], name="clip", min=-0.5, max=0.75)
    return graph("clip_opset10", [n], [("x", [1, 2, 3, 3])], ["y"])


@model("clip_opset11", opset=11)
def _():
    n = helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")
    return graph("clip_opset11", [n], [("x", [1, 2, 3, 3])], ["y"], [init("lo", np.float32(0.0)), init("hi", np.float32(6.0))])


@model("clip_opset13")
def _():
    hi = helper.make_node("Constant", [], ["hi"], name="hi_const", value=numpy_helper.from_array(np.float32(0.25)))
    n = helper.make_node("Clip", ["x", "", "hi"], ["y"], name="clip")
    return graph("clip_opset13", [hi, n], [("x", [1, 2, 3, 3])], ["y"])


# --- Pooling, LRN -----------------------------------------------------------------------------


@model("maxpool_ceil")
def _():
    n = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1], ceil_mode=1)
    return graph("maxpool_ceil", [n], [("x", [1, 2, 8, 8])], ["y"])


@model("avgpool_include_pad")
def _():
    n = helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    return graph("avgpool_include_pad", [n], [("x", [1, 2, 7, 7])], ["y"])


@model("avgpool_same_upper")
def _():
    n = helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER")
    return graph("avgpool_same_upper", [n], [("x", [1, 2, 7, 7])], ["y"])


@model("global_avgpool")
def _():
    return graph("global_avgpool", [helper.make_node("GlobalAveragePool", ["x"], ["y"], name="gap")], [("x", [1, 3, 5, 4])], ["y"])


@model("lrn")
def _():
    n = helper.make_node("LRN", ["x"], ["y"], name="lrn", size=5, alpha=2e-4, beta=0.75, bias=1.0)
    return graph("lrn", [n], [("x", [1, 7, 3, 3])], ["y"])


# --- Fully connected, MatMul ------------------------------------------------------------------


@model("gemm_transb")
def _():
    n = helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", transB=1, alpha=0.5, beta=2.0)
    return graph("gemm_transb", [n], [("x", [1, 6])], ["y"], [init("w", w(4, 6)), init("c", w(4))])


@model("gemm_plain")
def _():
    n = helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc")
    return graph("gemm_plain", [n], [("x", [1, 6])], ["y"], [init("w", w(6, 4)), init("c", w(1, 4))])


@model("matmul_const")
def _():
    n = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    return graph("matmul_const", [n], [("x", [1, 6])], ["y"], [init("w", w(6, 4))])


@model("matmul_const_bias")
def _():
    mm = helper.make_node("MatMul", ["x", "w"], ["m"], name="mm")
    add = helper.make_node("Add", ["m", "b"], ["y"], name="bias")
    return graph("matmul_const_bias", [mm, add], [("x", [1, 3, 6])], ["y"], [init("w", w(6, 4)), init("b", w(4))])


@model("matmul_runtime")
def _():
    return graph("matmul_runtime", [helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], [("a", [1, 2, 3, 4]), ("b", [1, 2, 4, 5])], ["y"])


# --- Element-wise, shape ops -------------------------------------------------------------------


@model("add_const")
def _():
    first = helper.make_node("Add", ["x", "c"], ["a"], name="add_after")
    second = helper.make_node("Add", ["c2", "a"], ["y"], name="add_before")
    return graph("add_const", [first, second], [("x", [1, 3, 2, 2])], ["y"], [init("c", w(3, 1, 1)), init("c2", w(2))])


@model("concat_negative_axis")
def _():
    n = helper.make_node("Concat", ["a", "b"], ["y"], name="cat", axis=-3)
    return graph("concat_negative_axis", [n], [("a", [1, 2, 3, 3]), ("b", [1, 3, 3, 3])], ["y"])


@model("flatten_reshape")
def _():
    flat = helper.make_node("Flatten", ["x"], ["f"], name="flat", axis=-2)
    reshape = helper.make_node("Reshape", ["f", "shape"], ["y"], name="reshape")
    return graph("flatten_reshape", [flat, reshape], [("x", [1, 2, 3, 4])], ["y"], [init("shape", np.array([0, -1, 2], np.int64))])


@model("softmax_opset13")
def _():
    return graph("softmax_opset13", [helper.make_node("Softmax", ["x"], ["y"], name="softmax")], [("x", [1, 3, 2, 2])], ["y"])


@model("softmax_opset11", opset=11)
def _():
    # Softmax-11 normalises over all of dims 1.. as one: the importer must expand it.
    return graph("softmax_opset11", [helper.make_node("Softmax", ["x"], ["y"], name="softmax", axis=1)], [("x", [1, 3, 2, 2])], ["y"])


@model("dropout_identity")
def _():
    relu = helper.make_node("Relu", ["x"], ["r"], name="relu")
    ident = helper.make_node("Identity", ["r"], ["i"], name="ident")
    drop = helper.make_node("Dropout", ["i", "ratio"], ["d"], name="drop")
    out = helper.make_node("Identity", ["d"], ["y"], name="to_output")
    return graph("dropout_identity", [relu, ident, drop, out], [("x", [1, 4])], ["y"], [init("ratio", np.float32(0.3))])


@model("pad_opset11", opset=11)
def _():
    n = helper.make_node("Pad", ["x", "pads", "value"], ["y"], name="pad", mode="constant")
    inits = [init("pads", np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64)), init("value", np.float32(-1.5))]
    return graph("pad_opset11", [n], [("x", [1, 2, 3, 3])], ["y"], inits)


@model("pad_opset18_axes", opset=18)
def _():
    n = helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], name="pad")
    inits = [init("pads", np.array([1, 1, 2, 0], np.int64)), init("axes", np.array([-2, -1], np.int64))]
    return graph("pad_opset18_axes", [n], [("x", [1, 2, 3, 3])], ["y"], inits)


@model("constant_nodes")
def _():
    shape = helper.make_node("Constant", [], ["shape"], name="shape_const", value_ints=[1, -1])
    bias = helper.make_node("Constant", [], ["bias"], name="bias_const", value=numpy_helper.from_array(w(12)))
    reshape = helper.make_node("Reshape", ["x", "shape"], ["f"], name="reshape")
    add = helper.make_node("Add", ["f", "bias"], ["y"], name="add")
    return graph("constant_nodes", [shape, bias, reshape, add], [("x", [1, 3, 2, 2])], ["y"])


@model("dynamic_batch")
def _():
    n = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[1, 1])
    return graph("dynamic_batch", [n], [("x", ["N", 3, 4, 4])], ["y"], [init("w", w(2, 3, 1, 1))])


@model("tiny_cnn")
def _():
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"], name="bn1"),
        helper.make_node("Clip", ["n1", "zero", "six"], ["r1"], name="relu6"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="dw", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=1),
    ]
    inits = [
        init("w1", w(8, 3, 3, 3)), init("b1", w(8)), init("s", w(8)), init("bb", w(8)), init("m", w(8)),
        init("v", w(8, positive=True)), init("zero", np.float32(0)), init("six", np.float32(6)),
        init("w2", w(8, 1, 3, 3)), init("fc_w", w(10, 8)), init("fc_b", w(10)),
    ]
    return graph("tiny_cnn", nodes, [("x", [1, 3, 16, 16])], ["prob"], inits)


# --- Models the importer must refuse -------------------------------------------------------------


@model("unsupported_ops")
def _():
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="transpose1", perm=[0, 1, 3, 2]),
        helper.make_node("Sigmoid", ["t"], ["s"], name="sigmoid1"),
        helper.make_node("Transpose", ["s"], ["u"], name="transpose2", perm=[0, 1, 3, 2]),
        helper.make_node("Relu", ["u"], ["y"], name="relu"),
    ]
    return graph("unsupported_ops", nodes, [("x", [1, 2, 3, 4])], ["y"])


@model("pad_reflect", opset=11)
def _():
    n = helper.make_node("Pad", ["x", "pads"], ["y"], name="reflect_pad", mode="reflect")
    return graph("pad_reflect", [n], [("x", [1, 2, 3, 3])], ["y"], [init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))])


@model("conv_runtime_weight")
def _():
    n = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_rt")
    return graph("conv_runtime_weight", [n], [("x", [1, 2, 3, 3]), ("w", [4, 2, 1, 1])], ["y"])


def main(argv):
    if len(argv) != 1:
        raise SystemExit(__doc__)
    out_dir = argv[0]
    os.makedirs(out_dir, exist_ok=True)
    listing = []
    for name, (build, opset) in MODELS.items():
        m = helper.make_model(build(), opset_imports=[helper.make_opsetid("", opset)], producer_name="onnx_test_models")
        m.ir_version = 8
        # Output shapes are left to ONNX shape inference.
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        onnx.checker.check_model(m, full_check=True)
        file = f"{name}.onnx"
        onnx.save(m, os.path.join(out_dir, file))
        listing.append({"name": name, "file": file, "opset": opset})
    with open(os.path.join(out_dir, "models.json"), "w") as f:
        json.dump(listing, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
