"""Import sirius-ai/LPRNet_Pytorch weights (a legacy, pre-zip torch pickle) into our Keras LPRNet.

The file is read without torch and without unpickling arbitrary objects: a restricted unpickler
accepts only OrderedDict, the tensor-rebuild function and the storage types, and the raw storages
that follow the pickles are read with numpy. Every storage byte is accounted for.

CLI: python -m lprnet.import_torch --pth Final_LPRNet_model.pth --out lprnet_cn.weights.h5
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

from core.errors import AlprError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass
class _Storage:
    key: str
    dtype: Any
    numel: int
    data: Union[np.ndarray, None] = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: Tuple[int, ...]
    stride: Tuple[int, ...]

    def materialize(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise AlprError(f"storage {self.storage.key} was never read")
        if not self.size:
            return np.array(data[self.offset])
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], shape=self.size, strides=tuple(s * itemsize for s in self.stride)
        )
        return np.array(view)


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


def _rebuild_tensor_v2(storage: _Storage, offset: int, size, stride, *_ignored) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: Dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise AlprError(f"refusing to unpickle {module}.{name}: not a plain torch state dict")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise AlprError(f"unsupported persistent object in torch file: {str(pid)[:60]}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise AlprError("torch file has a storage of unknown type")
        if len(pid) > 5 and pid[5] is not None:
            raise AlprError("torch storage views are not supported")
        if key not in self._storages:
            self._storages[key] = _Storage(key, _STORAGE_DTYPES[storage_type.name], int(numel))
        return self._storages[key]


def _safe_load(f) -> Any:
    return _RestrictedUnpickler(f, {}).load()


def read_legacy_state_dict(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """A legacy torch ``.pth`` state dict -> {name: numpy array}, without torch."""
    path = Path(path)
    if not path.is_file():
        raise AlprError(f"torch weights not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"PK":
        raise AlprError(f"{path} is a zip-format torch file; only the legacy format is parsed here")
    f = io.BytesIO(raw)
    try:
        if _safe_load(f) != _LEGACY_MAGIC:
            raise AlprError(f"{path} is not a legacy torch file (bad magic number)")
        _safe_load(f)  # protocol version
        sys_info = _safe_load(f)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise AlprError(f"{path} was written big-endian; not supported")
        storages: Dict[str, _Storage] = {}
        state = _RestrictedUnpickler(f, storages).load()
        keys = _safe_load(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error) as exc:
        raise AlprError(f"cannot parse torch file {path}: {exc}") from None
    if not isinstance(state, dict):
        raise AlprError(f"{path} does not hold a state dict")
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise AlprError(f"{path}: storage {key} listed but never referenced")
        (numel,) = struct.unpack("<q", f.read(8))
        if numel != storage.numel:
            raise AlprError(f"{path}: storage {key} holds {numel} elements, expected {storage.numel}")
        nbytes = numel * np.dtype(storage.dtype).itemsize
        chunk = f.read(nbytes)
        if len(chunk) != nbytes:
            raise AlprError(f"{path} is truncated (storage {key})")
        storage.data = np.frombuffer(chunk, dtype=np.dtype(storage.dtype).newbyteorder("<"))
    left = len(raw) - f.tell()
    if left:
        raise AlprError(f"{path}: {left} bytes after the last storage were not read")
    out: Dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise AlprError(f"{path}: entry {name} is not a tensor")
        out[name] = value.materialize()
    return out


def _conv(sd: Dict[str, np.ndarray], key: str) -> List[np.ndarray]:
    return [sd[f"{key}.weight"].transpose(2, 3, 1, 0), sd[f"{key}.bias"]]  # -> [kh, kw, in, out]



def _bn(sd: Dict[str, np.ndarray], key: str) -> List[np.ndarray]:
    return [sd[f"{key}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]


def keras_weights_from_state_dict(sd: Dict[str, np.ndarray]) -> Dict[str, List[np.ndarray]]:
    """Map LPRNet_Pytorch names to our Keras layer names; every float tensor must be used once."""
    mapping: Dict[str, List[np.ndarray]] = {}
    used = set()
    for name in sd:
        parts = name.split(".")
        if parts[-1] == "num_batches_tracked":
            used.add(name)
            continue
        if parts[-1] not in ("weight", "bias", "running_mean", "running_var"):
            raise AlprError(f"unexpected tensor {name} in LPRNet_Pytorch weights")
    modules = sorted({n.rsplit(".", 1)[0] for n in sd if not n.endswith("num_batches_tracked")})
    for module in modules:
        layer = module.replace(".", "_")
        if f"{module}.running_mean" in sd:
            mapping[layer] = _bn(sd, module)
            used.update(f"{module}.{p}" for p in ("weight", "bias", "running_mean", "running_var"))
        else:
            if sd[f"{module}.weight"].ndim != 4:
                raise AlprError(f"unexpected non-conv tensor {module}.weight")
            mapping[layer] = _conv(sd, module)
            used.update((f"{module}.weight", f"{module}.bias"))
    unused = sorted(set(sd) - used)
    if unused:
        raise AlprError(f"tensors not imported: {', '.join(unused)}")
    return mapping


def import_into(model, sd: Dict[str, np.ndarray]) -> None:
    """Set every LPRNet layer of ``model`` from the state dict; shapes must match exactly."""
    mapping = keras_weights_from_state_dict(sd)
    names = {layer.name for layer in model.layers}
    missing = sorted(set(mapping) - names)
    if missing:
        raise AlprError(f"model has no layers {', '.join(missing)} for the imported weights")
    for layer in model.layers:
        if layer.weights and not layer.name.startswith(("stn_", "context_norm")) and layer.name not in mapping:
            raise AlprError(f"layer {layer.name} has no weights in the torch file")
    for name, arrays in mapping.items():
        layer = model.get_layer(name)
        current = layer.get_weights()
        if [a.shape for a in current] != [a.shape for a in arrays]:
            raise AlprError(
                f"shape mismatch for {name}: model {[a.shape for a in current]} vs "
                f"torch {[a.shape for a in arrays]} (wrong number of classes?)"
            )
        layer.set_weights(arrays)


def build_imported_model(pth: Union[str, Path], stn: bool = False):
    """Our Keras LPRNet holding the LPRNet_Pytorch weights (classes taken from the file)."""
    from lprnet.model import build_lprnet

    sd = read_legacy_state_dict(pth)
    num_classes = int(sd["container.0.bias"].shape[0]) if "container.0.bias" in sd else 68
    model = build_lprnet(num_classes=num_classes, stn=stn)
    import_into(model, sd)
    return model


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from core.cli import atomic_path

    del argv
    f = flags.FLAGS
    model = build_imported_model(f.pth, stn=f.stn)
    out = Path(f.out)
    if not out.name.endswith(".weights.h5"):
        raise AlprError(f"--out must end with .weights.h5 (Keras 3 weights file), got {out}")
    with atomic_path(out, suffix=".weights.h5") as tmp:
        model.save_weights(str(tmp))
    print(f"wrote {out} ({model.count_params()} parameters, stn={f.stn})")


if __name__ == "__main__":
    from absl import app, flags

    from core.cli import guarded

    flags.DEFINE_string("pth", None, "LPRNet_Pytorch .pth state dict (legacy torch format)")
    flags.DEFINE_string("out", None, "output Keras weights file (*.weights.h5)")
    flags.DEFINE_bool("stn", False, "put an identity-initialised STN in front of the imported LPRNet")
    flags.mark_flags_as_required(["pth", "out"])
    app.run(guarded(main))
