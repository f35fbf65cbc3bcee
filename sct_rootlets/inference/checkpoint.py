"""Reading nnU-Net checkpoints without running code from them.

A checkpoint is a pickle; a plain `torch.load` runs whatever callable the file names, so a model folder from an
untrusted source could run code on `sct_deepseg_rootlets -model FOLDER`. Checkpoints are therefore read with
torch's weights-only unpickler, which builds only tensors, plain containers, numbers, strings and a few torch
types (dtypes, sizes, devices), plus the numpy numbers that nnU-Net's trainer writes into its training log
(`NUMPY_NUMBERS`). Anything else (any other class or function) is refused with a ModelError naming the file.

Torch before 2.6 (SCT's environment pins torch<2.3) cannot allow numpy's numbers by the name a file carries, and
published nnU-Net checkpoints hold them: there the same allowlist is enforced by our own unpickler
(`_RestrictedUnpickler`), which torch.load uses in place of pickle's, so SCT users load the published models too.
"""

import _codecs
import collections
import pickle
import re
import threading
import types

import numpy as np

from sct_rootlets.errors import ModelError

#: The scalar constructor numpy pickles its scalars with: `numpy.core.multiarray.scalar` under numpy 1,
#: `numpy._core.multiarray.scalar` under numpy 2 (asked of a scalar, so neither module is imported by name).
_SCALAR = np.float64(0).__reduce__()[0]

#: The only non-torch objects an nnU-Net checkpoint holds, found by reading checkpoints written by
#: `nnUNetTrainer.save_checkpoint` (nnunetv2 2.8) and by our lean trainer (tests/test_checkpoint.py):
#: - the scalar constructor, under both numpy spellings: nnU-Net's `logging` (losses, pseudo Dice per label,
#:   their moving average) and `_best_ema` are numpy float32/float64 scalars; published models were trained
#:   under numpy 1, whose name they carry, and are read under numpy 2 too;
#: - `numpy.dtype`, called to rebuild each scalar's dtype;
#: - the float32 and float64 dtype classes, whose pickled state (byte order) the unpickler sets only on an
#:   allowlisted type.
#: The `torch.device` in nnU-Net's `init_args`, optimizer state (tensors, numbers, tuples, None) and the grad
#: scaler's state (numbers) need nothing more: torch's own list covers them. Our lean trainer writes only
#: tensors and plain Python values.
NUMPY_NUMBERS = ((_SCALAR, "numpy.core.multiarray.scalar"), (_SCALAR, "numpy._core.multiarray.scalar"),
                 (np.dtype, "numpy.dtype"), type(np.dtype(np.float32)), type(np.dtype(np.float64)))

#: torch adds to its allowlist process-wide, even inside `safe_globals`: one load at a time, so that a load
#: ending in another thread never takes the list away from this one.
_LOCK = threading.Lock()



def _reads_numpy_numbers(torch) -> bool:
    """Whether this torch takes allowlist entries under the name they carry in the file (2.6 and newer)."""
    return torch.__version__ >= "2.6"


def _refused_object(message: str):
    """What torch's weights-only unpickler refused to build (e.g. 'GLOBAL posix.system'), from its error message;
    None when it stopped on bytes that are no pickle (a damaged file)."""
    found = re.search(r"GLOBAL ([\w.]+)|Unsupported class ([\w.]+)|but got <class '([\w.]+)'>|"
                      r"unrecognized function ([\w.<>]+)", message)
    if found is None:
        return None
    name = next(group for group in found.groups() if group)
    return f"GLOBAL {name}" if found.group(3) is None else f"an object of class {name}"


def _damage(exc: Exception) -> str:
    """Why a file is no readable checkpoint, in one line."""
    detail = str(exc).partition("WeightsUnpickler error:")[2].strip() or str(exc)
    return detail.splitlines()[0] if detail else "the file ends too early"


class _Refused(pickle.UnpicklingError):
    """An object our unpickler will not build; the message names it as torch's unpickler does."""


def _float_scalar(dtype, data=None):
    """numpy's scalar constructor for the float32/float64 numbers of nnU-Net's log, nothing else."""
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise _Refused(f"an object of class {type(dtype).__module__}.{type(dtype).__name__}")
    return _SCALAR(dtype, data) if data is not None else _SCALAR(dtype)


class _RestrictedUnpickler(pickle.Unpickler):
    """pickle's unpickler building only what `load_checkpoint` allows, for torch before 2.6. torch.load subclasses
    it (its wrapper resolves storage types itself and passes every other name here) and feeds it the tensor data.

    Allowed: plain pickle values, ordered dicts, torch's tensor and parameter rebuilders, torch dtypes, devices
    and sizes, `_codecs.encode` (how pickle protocol 2 stores bytes), and numpy float32/float64 scalars."""

    def find_class(self, module, name):
        import torch

        allowed = {("collections", "OrderedDict"): collections.OrderedDict,
                   ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
                   ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
                   ("torch", "device"): torch.device, ("torch", "Size"): torch.Size,
                   ("_codecs", "encode"): _codecs.encode,
                   ("numpy.core.multiarray", "scalar"): _float_scalar,
                   ("numpy._core.multiarray", "scalar"): _float_scalar, ("numpy", "dtype"): np.dtype}
        if (module, name) in allowed:
            return allowed[module, name]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise _Refused(f"GLOBAL {name}" if module in ("builtins", "__builtin__") else f"GLOBAL {module}.{name}")


def _restricted_pickle_module():
    """A stand-in for the pickle module that torch.load reads checkpoints with (Unpickler and load)."""
    module = types.ModuleType("sct_rootlets_restricted_pickle")
    module.Unpickler = _RestrictedUnpickler
    module.load = lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load()
    return module


def _refusal(path, refused: str) -> ModelError:
    return ModelError(f"Checkpoint {path} holds objects other than weights and numbers ({refused}), so it was "
                      f"refused: loading it could run code.")


def load_checkpoint(path) -> dict:
    """The checkpoint at `path` as a dict (tensors on the CPU), read without running code from it.

    ModelError when the file cannot be read (damaged, truncated, not a checkpoint) or holds objects other than
    weights and numbers (refused: building them could run code).
    """
    import torch

    try:
        if _reads_numpy_numbers(torch):
            with _LOCK, torch.serialization.safe_globals(list(NUMPY_NUMBERS)):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False,
                                    pickle_module=_restricted_pickle_module())
    except _Refused as exc:
        raise _refusal(path, str(exc)) from None
    except Exception as exc:  # torch raises many types for a damaged file
        refused = _refused_object(str(exc)) if "Weights only load failed" in str(exc) else None
        if refused is None:
            raise ModelError(f"Checkpoint {path} cannot be loaded: {_damage(exc)}") from None
        raise _refusal(path, refused) from None
    if not isinstance(checkpoint, dict):
        raise ModelError(f"Checkpoint {path} holds a {type(checkpoint).__name__}, not an nnU-Net checkpoint "
                         f"(a dict with network_weights).")
    return checkpoint
