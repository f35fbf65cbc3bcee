"""OpenVINO execution of the nnU-Net network on CPUs, as a drop-in for the PyTorch module.

On this project's 2-core reference machine one 224x224x48 tile of the reference network takes 11.4 s in PyTorch
eager and 6.3 s in OpenVINO fp32 (about the cores' FMA peak), with lower memory. The network is exported once per
checkpoint to ONNX with free spatial sizes (well under a minute) and cached next to the checkpoint; OpenVINO then
compiles it for each tile shape it meets (under a second). Results equal PyTorch's up to float rounding.

nnU-Net's predictor loads each fold's weights into its network before predicting with that fold;
`OpenVinoNetwork.load_state_dict` selects the fold's compiled network instead, so the predictor runs unchanged.
Beside each export the checkpoint's few other facts (configuration, mirror axes, trainer) are kept, so a run from
the cache neither reads the checkpoint nor imports torch (the fast region mode's own tiling is numpy).

"openvino-bf16" computes in bfloat16 where the CPU does so natively (AVX512-BF16, AMX): about 1.8 times faster
again than fp32 here, labels no longer equal to fp32's up to rounding only (measured against the truth in
bench/RESULTS.md). "auto" chooses it for the fast region mode on such CPUs, fp32 OpenVINO on other CPUs, and
PyTorch wherever a result must equal nnU-Net's (whole image, exact region) or on a GPU.
"""

import inspect
import io
import json
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from sct_rootlets.errors import ModelError, OutputError
from sct_rootlets.io.atomic import atomic_paths
from sct_rootlets.options import ENGINES
from sct_rootlets.store.sct_copy import inside_sct_models

logger = logging.getLogger(__name__)


def openvino_available() -> bool:
    """Whether openvino and onnx (which torch's exporter needs) are installed; onnx is looked up, not imported
    (a run from cached exports never imports it)."""
    import importlib.util

    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return importlib.util.find_spec("onnx") is not None


#: torch's ONNX exporter keeps global state: one export at a time in a process (e.g. cord and rootlets models).
_EXPORT_LOCK = threading.Lock()


def export_onnx(network, state_dict, path: Path, strides) -> None:
    """ONNX of `network` with `state_dict` loaded, spatial sizes left free; written atomically. The tracing sample
    is two network strides wide, the smallest input every stage of the network accepts."""
    with _EXPORT_LOCK:
        _export_onnx(network, state_dict, path, strides)


def _export_onnx(network, state_dict, path: Path, strides) -> None:
    import torch

    network.load_state_dict(state_dict)
    network.eval()
    buffer = io.BytesIO()
    sample = torch.zeros((1, 1, *(2 * int(s) for s in strides)))
    axes = {2: "depth", 3: "height", 4: "width"}
    # The TorchScript exporter: torch 2.9+ defaults to the dynamo one (which needs onnxscript) and must be told;
    # torch before 2.5 (SCT's torch<2.3) has only the TorchScript one, and no `dynamo` argument.
    exporter = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():  # the exporter warns that instance norm uses input statistics: it should
        warnings.simplefilter("ignore")
        torch.onnx.export(network, sample, buffer, **exporter, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": axes, "logits": axes}, opset_version=17)
    with atomic_paths([path], overwrite=True) as (temporary,):
        temporary.write_bytes(buffer.getvalue())


def cached_onnx_path(checkpoint: Path, checkpoint_sha256: str, fallback_folder: Path) -> Path:
    """Where a checkpoint's ONNX export lives: beside the checkpoint, or in `fallback_folder` when that folder
    cannot be written (a shared read-only install) or is SCT's (never written to). The name carries the
    checkpoint's hash, so new weights never meet an old export."""
    name = f"{checkpoint.stem}.{checkpoint_sha256[:16]}.onnx"
    beside = checkpoint.parent / name
    if beside.is_file() or (os.access(checkpoint.parent, os.W_OK) and not inside_sct_models(checkpoint)):
        return beside
    return Path(fallback_folder) / name


#: What inference reads from a checkpoint besides its weights. Kept beside the checkpoint's ONNX export, so that a
#: run from the cached export reads no checkpoint and imports no torch.
CHECKPOINT_FACTS = ("configuration", "inference_allowed_mirroring_axes", "trainer_name")


def checkpoint_facts(checkpoint: dict) -> dict:
    """The `CHECKPOINT_FACTS` of a loaded nnU-Net checkpoint (JSON-ready)."""
    axes = checkpoint.get("inference_allowed_mirroring_axes")
    return {"configuration": checkpoint.get("init_args", {}).get("configuration"),
            "inference_allowed_mirroring_axes": None if axes is None else [int(axis) for axis in axes],
            "trainer_name": checkpoint.get("trainer_name", "")}


def facts_path(onnx_path: Path) -> Path:
    """Where the checkpoint facts of an ONNX export are kept: beside it, same name, `.json`."""
    return Path(onnx_path).with_suffix(".json")


def read_checkpoint_facts(onnx_path: Path) -> Optional[dict]:
    """The checkpoint facts kept beside an ONNX export, or None when the export or its facts are missing or
    unreadable (the checkpoint is then read again)."""
    path = facts_path(onnx_path)
    if not (Path(onnx_path).is_file() and path.is_file()):
        return None
    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(facts, dict) or set(facts) != set(CHECKPOINT_FACTS):
        return None
    if facts["inference_allowed_mirroring_axes"] is not None:
        facts["inference_allowed_mirroring_axes"] = tuple(facts["inference_allowed_mirroring_axes"])
    return facts


def write_checkpoint_facts(onnx_path: Path, facts: dict) -> None:
    """Keep a checkpoint's facts beside its ONNX export (atomically); a folder that cannot be written only means
    that the next run reads the checkpoint again."""
    try:
        with atomic_paths([facts_path(onnx_path)], overwrite=True) as (temporary,):
            temporary.write_text(json.dumps(facts, indent=1))
    except (OSError, OutputError) as exc:
        logger.debug("Not caching the checkpoint's facts beside %s: %s", onnx_path, exc)


class OpenVinoNetwork:
    """The network of each fold compiled by OpenVINO from its ONNX export. `select` a fold, then `logits` (numpy);
    for nnU-Net's predictor it is also callable like the PyTorch network (tensor in, logits tensor out), and its
    `load_state_dict`, given one of `fold_states` (what the predictor holds as each fold's weights), selects that
    fold. `export(fold, path)` writes a fold's missing ONNX export (it needs torch); without it every export must
    exist."""

    def __init__(self, onnx_paths: Sequence[Path], threads: int, precision: str = "f32",
                 fold_states: Optional[Sequence] = None, export: Optional[Callable] = None):
        import openvino as ov

        self.core = ov.Core()
        self.threads, self.precision = threads, precision
        self.models = [self._onnx_model(fold, Path(path), export) for fold, path in enumerate(onnx_paths)]
        self.fold_states = list(fold_states) if fold_states is not None else list(onnx_paths)
        self.active = 0
        self.compiled = {}

    def _onnx_model(self, fold: int, path: Path, export: Optional[Callable]):
        """One fold's network, read from its cached ONNX export (made first if missing). Where the cache cannot be
        written (a full or read-only disk), the export is made in a temporary folder, read, and not kept."""
        if not path.is_file():
            if export is None:
                raise ModelError(f"The ONNX export {path} is missing.")
            logger.info("Converting the network to ONNX for OpenVINO: %s", path)
            try:
                export(fold, path)
            except OutputError as exc:
                logger.debug("Not caching the ONNX export: %s", exc)
                with tempfile.TemporaryDirectory(prefix="sct_rootlets_onnx-") as folder:
                    export(fold, Path(folder) / path.name)
                    return self._read(Path(folder) / path.name)
        return self._read(path)

    def _read(self, path: Path):
        try:
            return self.core.read_model(str(path))
        except Exception as exc:  # a damaged cache: tell the user which file to delete
            logger.debug("OpenVINO read error: %s", exc)
            raise ModelError(f"OpenVINO cannot read {path}; delete it to convert the network again.") from None

    def select(self, fold: int) -> None:
        """Run fold `fold` (its index among the exports) from now on."""
        self.active = fold

    def load_state_dict(self, state_dict, *args, **kwargs):
        """nnU-Net's per-fold weight loading: pick that fold's network."""
        for index, candidate in enumerate(self.fold_states):
            if candidate is state_dict:
                self.active = index
                return
        raise ModelError("The OpenVINO engine was given weights it was not built from.")

    def compile(self, shape: tuple) -> None:
        """Compile every fold's network for tiles of `shape` (batch, channel, z, y, x) ahead of `logits`, e.g. in
        a thread while the image is preprocessed (OpenVINO releases the interpreter while it compiles)."""
        for fold in range(len(self.models)):
            self._compiled(tuple(shape), fold)

    def _compiled(self, shape: tuple, fold: Optional[int] = None):
        key = (self.active if fold is None else fold, shape)
        if key not in self.compiled:
            model = self.models[key[0]].clone()
            model.reshape({0: list(shape)})
            self.compiled[key] = self.core.compile_model(model, "CPU", {
                "INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": self.precision,
                "PERFORMANCE_HINT": "LATENCY"})
        return self.compiled[key]

    def logits(self, tiles: np.ndarray) -> np.ndarray:
        """The selected fold's float32 logits of float32 tiles (batch, channel, z, y, x)."""
        compiled = self._compiled(tuple(tiles.shape))
        return np.asarray(compiled(np.ascontiguousarray(tiles, dtype=np.float32))[0])

    def __call__(self, tiles):
        import torch

        return torch.from_numpy(self.logits(tiles.detach().cpu().numpy()))

    # nnU-Net's predictor moves its network to a device and switches it to evaluation mode.
    def to(self, *args, **kwargs):
        return self

    def eval(self):
        return self


def native_bf16_cpu() -> bool:
    """True when OpenVINO reports bfloat16 as a native capability of this CPU (AVX512-BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def select_engine(name: Optional[str], device, region: str = "whole") -> str:
    """The engine to run: 'torch', 'openvino' or 'openvino-bf16' ('auto': see the module docstring). OpenVINO is
    for CPUs only and needs its package."""
    name = (name or "torch").lower()
    if name not in ENGINES:
        raise ModelError(f"Unknown engine {name!r}; use {', '.join(ENGINES)}.")
    if name == "auto":
        if device.type != "cpu" or region != "fast" or not openvino_available():
            return "torch"
        return "openvino-bf16" if native_bf16_cpu() else "openvino"
    if name.startswith("openvino"):
        if device.type != "cpu":
            raise ModelError("The OpenVINO engine runs on the CPU; use -device cpu or -engine torch.")
        if not openvino_available():
            raise ModelError("The OpenVINO engine needs the openvino and onnx packages: pip install openvino onnx.")
    return name
