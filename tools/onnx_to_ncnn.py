#!/usr/bin/env python3
"""Writes ncnn's .param/.bin from the ONNX file `ulayer-agent export` produces, so that ncnn
runs exactly the network we run (same weights, same fused graph).

Covers the ops our exporter emits for the zoo's classification networks: Conv (grouped and
depthwise), Relu, Clip, Add, GlobalAveragePool, AveragePool, MaxPool, Flatten, Reshape to
[N, -1], Gemm (transB = 1), Concat along channels, Softmax, Dropout. A Relu or Clip that is the
only reader of a Conv or Gemm output is fused into it (ncnn's activation_type 1 / 3, as
`ncnnoptimize` would do); a value read by several layers goes through a Split layer (ncnn
blobs have one consumer each). ncnn drops the batch dimension: channel axis 1 becomes 0.

Formats (ncnn wiki, "param and model file structure"): the .param starts with the magic
7767517, then "layer_count blob_count", then one line per layer: type, name, input count,
output count, input blobs, output blobs, then id=value parameters (arrays as
-233xx=count,values). The .bin holds each layer's weights in order: a convolution's or inner
product's weight as a 4-byte tag 0 (raw float32) followed by the floats, then its bias as
raw float32.

Usage: onnx_to_ncnn.py MODEL.onnx OUT.param OUT.bin
"""
import struct
import sys

import numpy as np
import onnx
from onnx import numpy_helper


class Unsupported(Exception):
    pass


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def fmt(v):
    if isinstance(v, float):
        return f"{v:e}"
    return str(v)


def convert(onnx_path, param_path, bin_path):
    model = onnx.load(onnx_path)
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            inits[n.output[0]] = numpy_helper.to_array(attrs(n)["value"])
    nodes = [n for n in g.node if n.op_type != "Constant"]
    readers = {}
    for n in nodes:
        for i in n.input:
            if i and i not in inits:
                readers[i] = readers.get(i, 0) + 1
    for o in g.output:
        readers[o.name] = readers.get(o.name, 0) + 1

    # Fusions: Conv/Gemm -> Relu/Clip when the activation is the only reader.
    producer = {n.output[0]: n for n in nodes}
    fused_act = {}  # conv node name -> (activation type, params, new output)
    skip = set()
    for n in nodes:
        if n.op_type in ("Relu", "Clip"):
            src = producer.get(n.input[0])
            if src is not None and src.op_type in ("Conv", "Gemm") and readers.get(n.input[0]) == 1:
                if n.op_type == "Relu":
                    fused_act[src.name] = (1, None, n.output[0])
                else:
                    lo = float(inits[n.input[1]]) if len(n.input) > 1 and n.input[1] else -3.4e38
                    hi = float(inits[n.input[2]]) if len(n.input) > 2 and n.input[2] else 3.4e38
                    fused_act[src.name] = (3, (lo, hi), n.output[0])
                skip.add(n.name or id(n))

    layers = []  # (type, name, inputs, outputs, params list[(id, value)])
    weights = bytearray()
    inp = g.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise Unsupported(f"input must be NCHW, got {dims}")
    layers.append(("Input", inp.name, [], [inp.name], [(0, dims[3]), (1, dims[2]), (2, dims[1])]))

    def tagged(arr):
        weights.extend(struct.pack("<I", 0))
        weights.extend(np.ascontiguousarray(arr, dtype="<f4").tobytes())

    def raw(arr):
        weights.extend(np.ascontiguousarray(arr, dtype="<f4").tobytes())

    for n in nodes:
        if (n.name or id(n)) in skip:
            continue
        a = attrs(n)
        name = n.name or n.output[0]
        ins = [i for i in n.input if i and i not in inits]
        out = n.output[0]
        op = n.op_type
        act = fused_act.get(n.name)
        if act is not None:
            out = act[2]
        act_params = []
        if act is not None:
            act_params.append((9, act[0]))
            if act[1] is not None:
                act_params.append((-23310, [act[1][0], act[1][1]]))
        if op == "Conv":
            w = inits[n.input[1]]
            b = inits[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[0], np.float32)
            oc, _, kh, kw = w.shape
            group = a.get("group", 1)
            st = a.get("strides", [1, 1])
            dl = a.get("dilations", [1, 1])
            pads = a.get("pads", [0, 0, 0, 0])  # top, left, bottom, right
            p = [(0, oc), (1, kw), (11, kh), (2, dl[1]), (12, dl[0]), (3, st[1]), (13, st[0]),
                 (4, pads[1]), (14, pads[0]), (15, pads[3]), (16, pads[2]), (5, 1), (6, int(w.size))]
            kind = "Convolution"
            if group > 1:
                kind = "ConvolutionDepthWise"
                p.append((7, group))
            layers.append((kind, name, ins, [out], p + act_params))
            tagged(w)
            raw(b)
        elif op == "Gemm":
            if a.get("transB", 0) != 1 or a.get("transA", 0) != 0:
                raise Unsupported("Gemm needs transA = 0, transB = 1")
            w = inits[n.input[1]]
            b = inits[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[0], np.float32)
            layers.append(("InnerProduct", name, ins, [out],
                           [(0, w.shape[0]), (1, 1), (2, int(w.size))] + act_params))
            tagged(w)
            raw(b)
        elif op == "Relu":
            layers.append(("ReLU", name, ins, [out], []))
        elif op == "Clip":
            lo = float(inits[n.input[1]]) if len(n.input) > 1 and n.input[1] else -3.4e38
            hi = float(inits[n.input[2]]) if len(n.input) > 2 and n.input[2] else 3.4e38
            layers.append(("Clip", name, ins, [out], [(0, lo), (1, hi)]))
        elif op == "Add":
            layers.append(("BinaryOp", name, ins, [out], [(0, 0)]))
        elif op == "GlobalAveragePool":
            layers.append(("Pooling", name, ins, [out], [(0, 1), (4, 1)]))
        elif op in ("MaxPool", "AveragePool"):
            k = a["kernel_shape"]
            st = a.get("strides", [1, 1])
            pads = a.get("pads", [0, 0, 0, 0])
            p = [(0, 0 if op == "MaxPool" else 1), (1, k[1]), (11, k[0]), (2, st[1]), (12, st[0]),
                 (3, pads[1]), (13, pads[0]), (14, pads[3]), (15, pads[2]),
                 (5, 0 if a.get("ceil_mode", 0) else 1)]
            if op == "AveragePool":
                p.append((6, a.get("count_include_pad", 0)))
            layers.append(("Pooling", name, ins, [out], p))
        elif op == "Flatten":
            layers.append(("Flatten", name, ins, [out], []))
        elif op == "Reshape":
            layers.append(("Flatten", name, ins, [out], []))
        elif op == "Concat":
            if a.get("axis") != 1:
                raise Unsupported("Concat along channels only")
            layers.append(("Concat", name, ins, [out], [(0, 0)]))
        elif op == "Softmax":
            layers.append(("Softmax", name, ins, [out], [(0, a.get("axis", 1) - 1), (1, 1)]))
        elif op == "Dropout":
            layers.append(("Dropout", name, ins, [out], []))
        else:
            raise Unsupported(f"op {op} ({name})")

    # Splits: a blob read by several layers is split into one copy per reader.
    uses = {}
    for (_, _, ins, _, _) in layers:
        for i in ins:
            uses[i] = uses.get(i, 0) + 1
    final = []
    taken = {}
    split_of = {}
    for layer in layers:
        kind, name, ins, outs, p = layer
        new_ins = []
        for i in ins:
            if i in split_of:
                k = taken[i]
                taken[i] += 1
                new_ins.append(split_of[i][k])
            else:
                new_ins.append(i)
        final.append((kind, name, new_ins, outs, p))
        for o in outs:
            if uses.get(o, 0) > 1:
                copies = [f"{o}_splitncnn_{k}" for k in range(uses[o])]
                split_of[o] = copies
                taken[o] = 0
                final.append(("Split", f"splitncnn_{o}", [o], copies, []))

    blobs = set()
    for (_, _, ins, outs, _) in final:
        blobs.update(ins)
        blobs.update(outs)
    lines = ["7767517", f"{len(final)} {len(blobs)}"]
    for kind, name, ins, outs, p in final:
        ps = []
        for k, v in p:
            if isinstance(v, list):
                ps.append(f"{k}={len(v)}," + ",".join(fmt(float(x)) for x in v))
            else:
                ps.append(f"{k}={fmt(v)}")
        safe = lambda s: s.replace(" ", "_")
        lines.append(" ".join([f"{kind:<24}", safe(name), str(len(ins)), str(len(outs))]
                              + [safe(i) for i in ins] + [safe(o) for o in outs] + ps))
    with open(param_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(bin_path, "wb") as f:
        f.write(bytes(weights))
    return inp.name.replace(" ", "_"), g.output[0].name.replace(" ", "_")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    i, o = convert(*sys.argv[1:])
    print(f"wrote {sys.argv[2]} and {sys.argv[3]} (input blob '{i}', output blob '{o}')")
