"""A thin helper over ``onnx.helper``: unique names, initializers, one call per node.

Given a data file, the builder streams every initializer that is not an integer constant
(norms, biases and RoPE tables too, however small) into it as the tensor is made (ONNX
external data: the tensor keeps its name, type and shape, plus the file, offset and length
of its bytes). The graph itself then stays a few megabytes
whatever the model's size: no protobuf 2 GB limit, and no copy of all weights in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS_DOMAIN = "com.microsoft"
OPSET = 21
# Offsets in the data file are multiples of this many bytes (a cache line): aligned for any
# element type and for the WebAssembly engine's SIMD loads, at a few bytes of padding a
# tensor (page-sized alignment cost the default model 2-5 MB of download; onnxruntime maps
# external data from any offset).
EXTERNAL_ALIGN = 64
# Integer initializers (Reshape shapes, ReduceSum axes) stay in the graph: onnxruntime's
# shape inference reads them while it loads the graph.
IN_GRAPH_TYPES = (TensorProto.INT64, TensorProto.INT32)


class ExternalData:
    """One ONNX external data file, written tensor by tensor (offsets aligned to 64 bytes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = path.open("wb")
        self.offset = 0

    def append(self, tensor: TensorProto, raw: bytes | memoryview) -> None:
        """Write ``raw`` (the tensor's little-endian bytes) and point ``tensor`` at them."""
        pad = -self.offset % EXTERNAL_ALIGN
        if pad:
            self.handle.write(b"\0" * pad)
            self.offset += pad
        length = len(raw) if isinstance(raw, bytes) else raw.nbytes
        self.handle.write(raw)
        tensor.ClearField("raw_data")
        del tensor.external_data[:]
        for key, value in (("location", self.path.name), ("offset", str(self.offset)), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        tensor.data_location = TensorProto.EXTERNAL
        self.offset += length

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()


class GraphBuilder:
    def __init__(self, data_file: Path | None = None) -> None:
        self.external = ExternalData(data_file) if data_file is not None else None
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = set()
        self._consts: dict[tuple[str, bytes], str] = {}

    def unique(self, base: str) -> str:
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        return name

    def initializer(self, name: str, array: np.ndarray) -> str:
        name = self.unique(name)
        array = np.ascontiguousarray(array)
        data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        if self.external is not None and data_type not in IN_GRAPH_TYPES:
            tensor = TensorProto(name=name, dims=list(array.shape), data_type=data_type)
            self.external.append(tensor, array.reshape(-1).data.cast("B"))  # no copy
        else:
            tensor = numpy_helper.from_array(array, name)
        self.initializers.append(tensor)
        return name

    def add_tensor(self, tensor: onnx.TensorProto) -> str:
        """An initializer already in ONNX form (e.g. packed 4-bit codes); renamed if taken."""
        tensor.name = self.unique(tensor.name)
        if self.external is not None and tensor.data_type not in IN_GRAPH_TYPES and tensor.HasField("raw_data"):
            self.external.append(tensor, tensor.raw_data)
        self.initializers.append(tensor)
        return tensor.name

    def const(self, array: np.ndarray | np.generic | list[int] | float, dtype: Any = None) -> str:
        """A small constant, shared when the same value is asked for twice."""
        value = np.asarray(array, dtype=dtype)
        key = (str(value.dtype) + str(value.shape), value.tobytes())
        if key not in self._consts:
            self._consts[key] = self.initializer("const", value)
        return self._consts[key]

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1,
           domain: str = "", name: str | None = None, **attrs: Any) -> Any:
        base = name or op_type
        if isinstance(outputs, int):
            out_names = [self.unique(f"{base}/out{i}") for i in range(outputs)]
        else:
            out_names = outputs
            self._names.update(n for n in outputs if n)
        node = helper.make_node(op_type, inputs, out_names, name=self.unique(base), domain=domain or None, **attrs)
        self.nodes.append(node)
        return out_names[0] if len(out_names) == 1 else out_names

    def add_input(self, name: str, elem_type: int, shape: list[Any]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        self._names.add(name)
        return name

    def add_output(self, name: str, elem_type: int, shape: list[Any]) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def model(self, graph_name: str, metadata: dict[str, str]) -> onnx.ModelProto:
        if self.external is not None:
            self.external.close()
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs, self.initializers)
        # make_graph copied the tensors into the graph: drop ours so they are held once.
        self.initializers.clear()
        self._consts.clear()
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
            producer_name="pocketlm",
        )
        model.ir_version = 10
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        return model


FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16
INT64 = TensorProto.INT64
INT32 = TensorProto.INT32
