"""Restricted unpickler for NVlabs network pickles (stylegan2-ada-pytorch, stylegan3):
reads tensors and init kwargs, never imports or executes the source text the file embeds,
and refuses every global outside a short allow-list (docs/formats.md §4.2)."""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import torch

_NUMERIC_KINDS = "biufc"


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setstate__(self, state: Any) -> None:
        # A real EasyDict carries no instance state; anything else is not an NVlabs file.
        if state:
            raise pickle.UnpicklingError("EasyDict with unexpected instance state")


@dataclass(frozen=True)
class PersistentRecord:
    """What ``torch_utils.persistence`` would have rebuilt, kept inert: the class name,
    the sha256 of the embedded module source (never compiled) and the module's state."""

    class_name: str
    version: int
    source_sha256: str
    state: dict

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("BUILD applied to a persistent-object record")

    @property
    def children(self) -> dict[str, PersistentRecord]:
        return dict(self.state.get("_modules") or {})

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    def tensors(self, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
        """Parameters, then buffers, then children recursively, with dotted names: the
        order and names of ``named_parameters()`` followed by ``named_buffers()``."""
        yield from _walk(self, prefix, "_parameters")
        yield from _walk(self, prefix, "_buffers")


def _walk(rec: PersistentRecord, prefix: str, slot: str) -> Iterator[tuple[str, torch.Tensor]]:
    for name, value in (rec.state.get(slot) or {}).items():
        if value is not None:
            if not isinstance(value, torch.Tensor):
                raise pickle.UnpicklingError(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
            yield prefix + name, value
    for name, child in rec.children.items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise pickle.UnpicklingError(f"child module {prefix}{name} is not a persistent object")
        yield from _walk(child, f"{prefix}{name}.", slot)


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("persistent object whose meta is not {'type': 'class', ...}")
    src, name, state = meta.get("module_src"), meta.get("class_name"), meta.get("state")
    if not isinstance(src, str) or not isinstance(name, str) or not isinstance(state, dict):
        raise pickle.UnpicklingError("persistent object meta lacks module_src/class_name/state")
    version = meta.get("version")
    return PersistentRecord(
        name,
        int(version) if isinstance(version, int) else -1,
        hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest(),
        state,
    )


def _load_storage_from_bytes(blob: Any):
    if not isinstance(blob, (bytes, bytearray)):
        raise pickle.UnpicklingError("storage payload is not bytes")
    # The blob is a legacy torch.save of one storage; torch's own restricted loader reads it.
    storage = torch.load(io.BytesIO(bytes(blob)), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"storage payload decoded to a {type(storage).__name__}")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    if not (isinstance(storage_offset, int) and all(isinstance(v, int) for v in (*size, *stride))):
        raise pickle.UnpicklingError("tensor with a non-integer size, stride or offset")
    # Hooks and metadata are dropped: a weights file has no use for them.
    return torch._utils._rebuild_tensor_v2(
        storage, storage_offset, tuple(size), tuple(stride), False, collections.OrderedDict()
    )


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter rebuilt from something that is not a tensor")
    return data


def _numpy_dtype(spec: Any, align: bool = False, copy: bool = True) -> np.dtype:
    if not isinstance(spec, str):
        raise pickle.UnpicklingError("numpy dtype from a non-string spec")
    dt = np.dtype(spec)
    if dt.kind not in _NUMERIC_KINDS:
        raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not numeric")
    return np.dtype(spec, bool(align), True)


def _numpy_scalar(dtype: Any, data: Any = None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS:
        raise pickle.UnpicklingError("numpy scalar of a non-numeric dtype")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar with a malformed payload")
    return np.frombuffer(data, dtype=dtype)[0].item()


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come only from ``_ALLOWED`` (inert stand-ins
    or torch's own restricted loaders); everything else raises ``UnpicklingError``."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id")


def restricted_load(fh: BinaryIO) -> Any:
    """Unpickle ``fh`` with ``RestrictedUnpickler``; ``pickle.UnpicklingError`` (and the
    usual EOFError/ValueError on garbage) on anything outside the allow-list."""
    return RestrictedUnpickler(fh).load()
