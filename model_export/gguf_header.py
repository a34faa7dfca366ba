"""The key-value header of a GGUF file, read without touching its tensors.

GGUF layout (ggml ``docs/gguf.md``, versions 2 and 3): ``b"GGUF"``, ``uint32`` version,
``uint64`` tensor count, ``uint64`` key-value count, then each pair as a string key
(``uint64`` length + UTF-8 bytes), a ``uint32`` value type and the value. Strings are
length-prefixed UTF-8; arrays are ``uint32`` item type, ``uint64`` count, items. Numbers are
little-endian (a file whose version reads byte-swapped is big-endian, and is read as such).

Only the header is read, so a 150k-token vocabulary loads in a fraction of a second from a
file of any size. Values come back as plain Python ``int``/``float``/``bool``/``str``/``list``.

After the key-value pairs come the tensor infos (:func:`read_layout`): each a string name,
``uint32`` dimension count, ``uint64`` dimensions (innermost first), ``uint32`` ggml type and
``uint64`` offset relative to the data section, which starts at the first multiple of
``general.alignment`` (default 32) after the infos.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ExportError

# value type -> struct format of one item
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class _Reader:
    def __init__(self, handle: BinaryIO, order: str) -> None:
        self.handle, self.order = handle, order

    def take(self, fmt: str, count: int = 1) -> tuple[Any, ...]:
        size = struct.calcsize(f"{self.order}{count}{fmt}")
        data = self.handle.read(size)
        if len(data) != size:
            raise ExportError(f"GGUF header ends early in {self.handle.name!r}; the file is truncated")
        return struct.unpack(f"{self.order}{count}{fmt}", data)

    def string(self) -> str:
        (length,) = self.take("Q")
        data = self.handle.read(length)
        if len(data) != length:
            raise ExportError(f"GGUF header ends early in {self.handle.name!r}; the file is truncated")
        return data.decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])[0]
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.take("I")[0], self.take("Q")[0]
            if item_kind in _SCALARS:
                return list(self.take(_SCALARS[item_kind], count))
            return [self.value(item_kind) for _ in range(count)]
        raise ExportError(f"GGUF header of {self.handle.name!r} has an unknown value type {kind}")


DEFAULT_ALIGNMENT = 32


@dataclass(frozen=True)
class TensorInfo:
    """One tensor info of the header: ``dims`` innermost first (as GGUF stores them),
    ``ggml_type`` the raw type number, ``offset`` in bytes from the data section's start."""

    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int


@dataclass(frozen=True)
class Layout:
    """A GGUF file's header: metadata, tensor infos, and where the data section starts."""

    byte_order: str  # "<" little-endian, ">" big-endian
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    data_start: int


def _read(path: str | Path, keep: Callable[[str], bool], with_tensors: bool) -> Layout:
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ExportError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
        (version,) = struct.unpack("<I", handle.read(4))
        order = "<" if version < 0x10000 else ">"
        reader = _Reader(handle, order)
        (tensor_count,) = reader.take("Q")
        (count,) = reader.take("Q")
        out: dict[str, Any] = {}
        alignment = DEFAULT_ALIGNMENT
        for _ in range(count):
            key = reader.string()
            (kind,) = reader.take("I")
            value = reader.value(kind)
            if key == "general.alignment":
                alignment = int(value)
            if keep(key):
                out[key] = value
        tensors: list[TensorInfo] = []
        if not with_tensors:
            return Layout(order, out, tensors, 0)
        if alignment <= 0 or alignment & (alignment - 1):
            raise ExportError(f"{path} has general.alignment {alignment}, expected a power of two; "
                              "the file is corrupt: download or convert it again")
        for _ in range(tensor_count):
            name = reader.string()
            (n_dims,) = reader.take("I")
            dims = reader.take("Q", n_dims)
            (ggml_type,) = reader.take("I")
            (offset,) = reader.take("Q")
            tensors.append(TensorInfo(name, tuple(int(d) for d in dims), int(ggml_type), int(offset)))
        end = handle.tell()
        return Layout(order, out, tensors, end + (-end % alignment))


def read_metadata(path: str | Path, keep: Callable[[str], bool] = lambda _key: True) -> dict[str, Any]:
    """Header values of the GGUF file at ``path`` whose key ``keep`` accepts.

    Raises ``ExportError`` when the file is not GGUF or its header is cut short."""
    return _read(path, keep, with_tensors=False).metadata


def read_layout(path: str | Path) -> Layout:
    """The whole header of the GGUF file at ``path``: every metadata value, the tensor infos
    and the data section's offset (tensor data itself is not read).

    Raises ``ExportError`` when the file is not GGUF or its header is cut short."""
    return _read(path, lambda _key: True, with_tensors=True)
