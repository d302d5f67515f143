"""Checked reading of GGUF files (llama.cpp's format): metadata, tensor infos and dequantized tensors.

A GGUF file is a header (key/value metadata, then one info record per tensor: name, shape, ggml
type, offset) followed by the aligned tensor data. The header is parsed here in one pass (the
``gguf`` package's reader builds a numpy view per vocabulary string, several seconds for a 49k-token
vocabulary); the ``gguf`` package dequantizes the tensors (every ggml type it knows). On top of
that a checkpoint loader needs a one-line error naming the file and the tensor when the file is
truncated or its header is damaged, and a finite-values check after dequantizing (GGUF carries no
checksum, so a damaged scale would otherwise load silently as inf/NaN weights).
"""

import mmap
import struct
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Union

import numpy as np
import torch


def _import_gguf():
    try:
        import gguf
    except ImportError:
        raise ImportError("Reading or writing GGUF files needs the gguf package: pip install gguf") from None
    return gguf


# GGUF metadata value types (gguf's GGUFValueType): struct format of the scalar ones.
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32, 6: np.float32,
          7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}


class _Cursor:
    """Sequential little-endian reads from the header bytes; running past the end names what was read."""

    def __init__(self, buf: memoryview, size: int) -> None:
        self.buf, self.pos, self.size = buf, 0, size
        self.what = "the file header"

    def take(self, n: int) -> memoryview:
        if self.pos + n > self.size:
            raise ValueError(f"file ends inside {self.what} (truncated?)")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def scalar(self, vtype: int):
        fmt = _SCALAR[vtype]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.scalar(10)
        return bytes(self.take(n)).decode("utf-8", errors="surrogateescape")

    def value(self, vtype: int):
        if vtype == _STRING:
            return self.string()
        if vtype in _SCALAR:
            return self.scalar(vtype)
        if vtype == _ARRAY:
            item, n = self.scalar(4), self.scalar(10)
            if item == _STRING:
                return [self.string() for _ in range(n)]
            if item in _NUMPY:
                dtype = np.dtype(_NUMPY[item])
                return np.frombuffer(self.take(n * dtype.itemsize), dtype=dtype).tolist()
            raise ValueError(f"unsupported array element type {item} in {self.what}")
        raise ValueError(f"unknown metadata value type {vtype} in {self.what}")


class GGUFTensorInfo(NamedTuple):
    """Where one tensor lives in a GGUF file."""

    name: str
    shape: List[int]  # PyTorch order: [out_features, in_features] for a weight
    type_name: str  # ggml type, e.g. "Q4_1"
    offset: int  # absolute byte offset of the data
    n_bytes: int


class GGUFFile:
    """A GGUF file opened for reading: metadata parsed, tensor data memory-mapped.

    Args:
        path (Union[str, Path]): the ``.gguf`` file.

    Attributes:
        path (Path): the file.
        metadata (Dict[str, Any]): every key/value pair (strings, numbers, bools and lists of them),
            e.g. ``general.architecture`` -> ``"llama"``, ``tokenizer.ggml.tokens`` -> list of str.
        tensors (Dict[str, GGUFTensorInfo]): tensor name -> name, shape, ggml type and location.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not a GGUF file, is truncated, or has a damaged header; the message
            names the file and, where one is at fault, the tensor.
    """

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {self.path}")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        cur = _Cursor(memoryview(self._map), size)
        try:
            self._parse(cur, size)
        except (ValueError, UnicodeDecodeError, struct.error, OverflowError) as e:
            raise ValueError(f"{self.path}: {_one_line(e)}") from None

    def _parse(self, cur: "_Cursor", size: int) -> None:
        gguf = _import_gguf()
        if size < 4 or bytes(cur.take(4)) != b"GGUF":
            raise ValueError("not a GGUF file (no GGUF magic at the start)")
        version, n_tensors, n_kv = cur.scalar(4), cur.scalar(10), cur.scalar(10)
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not supported (2 or 3 expected)")
        self.metadata: Dict[str, Any] = {}
        self._types: Dict[str, tuple] = {}
        for i in range(n_kv):
            cur.what = f"metadata entry {i}"
            key = cur.string()
            cur.what = f"metadata value {key!r}"
            vtype = cur.scalar(4)
            start = cur.pos
            self.metadata[key] = cur.value(vtype)
            item = None
            if vtype == _ARRAY:
                item = gguf.GGUFValueType(struct.unpack("<I", cur.buf[start:start + 4])[0])
            self._types[key] = (gguf.GGUFValueType(vtype), item)
        infos = []
        for i in range(n_tensors):
            cur.what = f"tensor info {i}"
            name = cur.string()
            cur.what = f"the info of tensor {name!r}"
            dims = [cur.scalar(10) for _ in range(cur.scalar(4))]
            raw_type, offset = cur.scalar(4), cur.scalar(10)
            try:
                qtype = gguf.GGMLQuantizationType(raw_type)
            except ValueError:
                raise ValueError(f"tensor {name!r} has unknown ggml type {raw_type}") from None
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
            if dims and dims[0] % block:
                raise ValueError(f"tensor {name!r} has rows of {dims[0]} values, not a multiple of {qtype.name}'s "
                                 f"block of {block}")
            n_elems = int(np.prod(dims, dtype=np.float64)) if dims else 1
            infos.append((name, dims, qtype, offset, n_elems * type_size // block))
        alignment = int(self.metadata.get("general.alignment", 32))
        data_start = (cur.pos + alignment - 1) // alignment * alignment
        self.tensors: Dict[str, GGUFTensorInfo] = {}
        for name, dims, qtype, offset, n_bytes in infos:
            start = data_start + offset
            if name in self.tensors:
                raise ValueError(f"tensor {name!r} appears twice")
            if start + n_bytes > size:
                raise ValueError(f"tensor {name!r} ({qtype.name}, shape {list(reversed(dims))}) needs bytes "
                                 f"{start}..{start + n_bytes} but the file has {size} bytes (truncated?)")
            self.tensors[name] = GGUFTensorInfo(name, [int(d) for d in reversed(dims)], qtype.name, start, n_bytes)

    def get(self, key: str, default: Any = None) -> Any:
        """Metadata value of ``key``, or ``default``."""
        return self.metadata.get(key, default)

    def require(self, key: str) -> Any:
        """Metadata value of ``key``.

        Raises:
            ValueError: naming the file and the key, if it is absent.
        """
        if key not in self.metadata:
            raise ValueError(f"{self.path} has no metadata key {key!r}")
        return self.metadata[key]

    def typed_metadata(self, *prefixes: str) -> Dict[str, tuple]:
        """Metadata whose keys start with one of ``prefixes``, as ``key -> (value, GGUFValueType,
        element type or None)``: what ``GGUFWriter.add_key_value`` takes to write it again unchanged."""
        return {k: (v, *self._types[k]) for k, v in self.metadata.items() if k.startswith(prefixes)}

    def shape(self, name: str) -> List[int]:
        """Shape of tensor ``name`` in PyTorch order (``[out_features, in_features]`` for a weight)."""
        return list(self.tensors[name].shape)

    def type_name(self, name: str) -> str:
        """ggml type of tensor ``name``, e.g. ``"Q4_1"``."""
        return self.tensors[name].type_name

    def load_tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Dequantize tensor ``name`` (any ggml type the ``gguf`` package knows) to ``dtype``.

        Args:
            name (str): GGUF tensor name, e.g. ``"blk.0.attn_q.weight"``.
            dtype (torch.dtype): result dtype. Default fp32.

        Returns:
            torch.Tensor: shape as :meth:`shape`.

        Raises:
            KeyError: if the file has no such tensor.
            ValueError: naming the file and the tensor, if its values are not finite (damaged data)
                or its type cannot be dequantized.
        """
        gguf = _import_gguf()
        info = self.tensors[name]
        qtype = gguf.GGMLQuantizationType[info.type_name]
        raw = np.frombuffer(self._map, dtype=np.uint8, count=info.n_bytes, offset=info.offset)
        shape = info.shape or [1]
        try:
            data = raw.reshape(gguf.quants.quant_shape_to_byte_shape(shape, qtype)) \
                if qtype not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) else raw
            values = gguf.quants.dequantize(data, qtype)
        except (NotImplementedError, ValueError) as e:
            raise ValueError(f"{self.path}: cannot dequantize tensor {name!r} ({info.type_name}): "
                             f"{_one_line(e)}") from None
        # A copy: the memory map is read-only and torch wants writable memory.
        values = np.array(values, dtype=np.float32).reshape(info.shape)
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            raise ValueError(f"{self.path}: tensor {name!r} ({info.type_name}) has {bad} non-finite values "
                             "(damaged file?)")
        return torch.from_numpy(values).to(dtype)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
