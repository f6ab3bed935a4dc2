#!/usr/bin/env python3
"""Convert a legacy (pre-zip) PyTorch checkpoint to safetensors, using only the standard library.

candle reads safetensors but not torch's old pickle format, and installing PyTorch (several GB) just
to re-save two checkpoints is out of proportion. The legacy format is: five pickles in a row (magic,
protocol, sys info, the object graph with storages as persistent ids, the list of storage keys),
then each storage's raw bytes behind an int64 element count. We rebuild tensors from their
(storage, offset, size, stride), materialising non-contiguous ones in row-major order.

Usage: pth_to_safetensors.py IN.pth OUT.safetensors
"""
import array
import collections
import json
import pickle
import struct
import sys

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# storage class name -> (safetensors dtype, array typecode, bytes per element)
STORAGE_TYPES = {
    "FloatStorage": ("F32", "f", 4),
    "DoubleStorage": ("F64", "d", 8),
    "HalfStorage": ("F16", "H", 2),
    "LongStorage": ("I64", "q", 8),
    "IntStorage": ("I32", "i", 4),
    "ByteStorage": ("U8", "B", 1),
}


class StorageRef:
    def __init__(self, kind, key, numel):
        self.kind, self.key, self.numel = kind, key, numel


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return TensorRef(storage, storage_offset, size, stride)


def rebuild_parameter(data, *_ignored):
    return data


class StorageType:
    def __init__(self, name):
        self.name = name


class LegacyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return rebuild_parameter
        if module == "torch" and name in STORAGE_TYPES:
            return StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch.nn.parameter" and name == "Parameter":
            return rebuild_parameter
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, saved_id):
        kind = saved_id[0].decode() if isinstance(saved_id[0], bytes) else saved_id[0]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {kind!r}")
        storage_type, key, _location, numel, view_metadata = saved_id[1:6]
        if view_metadata is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        return StorageRef(storage_type.name, key, numel)


def flatten(obj, prefix=""):
    """Yield (name, TensorRef) for every tensor in nested dicts (handles {'state_dict': ...})."""
    if isinstance(obj, TensorRef):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))


def materialise(tensor, storage_bytes):
    dtype, code, width = STORAGE_TYPES[tensor.storage.kind]
    values = array.array(code)
    values.frombytes(storage_bytes)
    numel = 1
    for d in tensor.size:
        numel *= d
    contiguous_stride, acc = [], 1
    for d in reversed(tensor.size):
        contiguous_stride.insert(0, acc)
        acc *= d
    if tuple(contiguous_stride) == tensor.stride or numel <= 1:
        out = values[tensor.offset : tensor.offset + numel]
    else:
        out = array.array(code, bytes(numel * width))
        i = 0
        for index in _row_major_indices(tensor.size):
            out[i] = values[tensor.offset + sum(a * b for a, b in zip(index, tensor.stride))]
            i += 1
    if sys.byteorder != "little":
        out.byteswap()
    return dtype, out.tobytes()


def _row_major_indices(size):
    if not size:
        yield ()
        return
    for head in range(size[0]):
        for rest in _row_major_indices(size[1:]):
            yield (head,) + rest


def convert(src, dst, skip_suffixes=("num_batches_tracked",)):
    with open(src, "rb") as f:
        if pickle.load(f) != LEGACY_MAGIC:
            raise SystemExit(f"{src}: not a legacy torch checkpoint (zip checkpoints load in candle directly)")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        graph = LegacyUnpickler(f).load()
        keys = pickle.load(f)
        widths = {t.storage.key: STORAGE_TYPES[t.storage.kind][2] for _name, t in flatten(graph)}
        where = {}  # storage key -> (element count, byte position of its data)
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            where[key] = (numel, f.tell())
            f.seek(numel * widths.get(key, 0), 1)
        tensors = collections.OrderedDict()
        for name, t in flatten(graph):
            if name.endswith(skip_suffixes):
                continue
            numel, pos = where[t.storage.key]
            width = widths[t.storage.key]
            f.seek(pos)
            tensors[name] = (t, materialise(t, f.read(numel * width)))
    write_safetensors(dst, tensors)
    return len(tensors)


def write_safetensors(dst, tensors):
    header, offset = {}, 0
    for name, (t, (dtype, data)) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(t.size), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(dst, "wb") as out:
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)
        for _name, (_t, (_dtype, data)) in tensors.items():
            out.write(data)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    n = convert(sys.argv[1], sys.argv[2])
    print(f"wrote {n} tensors to {sys.argv[2]}")
