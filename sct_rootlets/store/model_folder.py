"""The on-disk layout of an nnU-Net v2 model, as the published rootlets releases and SCT install it.

```
<any folder>/[<release folder>/]nnUNetTrainer*__<plans>__<configuration>/
    dataset.json  plans.json
    fold_0 ... fold_4/ or fold_all/  -> checkpoint_final.pth (else checkpoint_best.pth)
```
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from sct_rootlets.errors import ModelError

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth")
_FOLD_DIR = re.compile(r"^fold_(\d+|all)$")
#: How deep below the given folder the trainer folder may sit (SCT: deepseg_models/<task>/<release>/<trainer>).
_SEARCH_DEPTH = 3


@dataclass(frozen=True)
class ModelFolder:
    """A located nnU-Net trainer folder and the checkpoint chosen for each fold to ensemble."""
    trainer_dir: Path
    dataset_json: dict
    plans: dict
    checkpoints: dict  # fold name ("0", "all", ...) -> checkpoint path

    @property
    def configuration(self) -> str:
        """The nnU-Net configuration from the folder name (e.g. '3d_fullres')."""
        return self.trainer_dir.name.split("__")[-1]

    @property
    def files(self) -> list:
        """Every file inference reads, for hashing: dataset.json, plans.json and the chosen checkpoints."""
        return [self.trainer_dir / "dataset.json", self.trainer_dir / "plans.json",
                *(self.checkpoints[fold] for fold in sorted(self.checkpoints))]


def _is_trainer_dir(path: Path) -> bool:
    return path.is_dir() and (path / "plans.json").is_file() and (path / "dataset.json").is_file()


def find_trainer_dir(root: Path) -> Path:
    """The single trainer folder at or below `root` (at most _SEARCH_DEPTH levels down)."""
    root = Path(root)
    if not root.is_dir():
        raise ModelError(f"Model folder {root} does not exist.")
    if _is_trainer_dir(root):
        return root
    found, level = [], [root]
    for _ in range(_SEARCH_DEPTH):
        level = [child for folder in level for child in sorted(folder.iterdir()) if child.is_dir()]
        found = [folder for folder in level if folder.name.startswith("nnUNetTrainer") and _is_trainer_dir(folder)]
        if found:
            break
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise ModelError(f"{root} holds {what} nnU-Net trainer folders (nnUNetTrainer*__* with plans.json and "
                         f"dataset.json); give the one model folder to use.")
    return found[0]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"Cannot read {path}: {exc}.") from None


def _checkpoint_in(fold_dir: Path) -> Optional[Path]:
    for name in CHECKPOINT_NAMES:
        if (fold_dir / name).is_file():
            return fold_dir / name
    return None


def choose_checkpoints(trainer_dir: Path, folds: Optional[Sequence[str]] = None) -> dict:
    """Fold -> checkpoint (final, else best) for the requested folds, or for all numbered folds present.

    As nnU-Net does, `fold_all` is used when asked for or when it is the only fold; it is not mixed into an
    ensemble of numbered folds unless requested.
    """
    available = {}
    for child in sorted(trainer_dir.iterdir()):
        match = _FOLD_DIR.match(child.name)
        if match and child.is_dir():
            checkpoint = _checkpoint_in(child)
            if checkpoint is not None:
                available[match.group(1)] = checkpoint
    if not available:
        raise ModelError(f"Model folder {trainer_dir} has no checkpoint (fold_*/checkpoint_final.pth or "
                         f"checkpoint_best.pth).")
    if folds:
        missing = [str(fold) for fold in folds if str(fold) not in available]
        if missing:
            raise ModelError(f"Fold(s) {', '.join(missing)} have no checkpoint in {trainer_dir}; available: "
                             f"{', '.join(available)}.")
        return {str(fold): available[str(fold)] for fold in folds}
    numbered = {fold: path for fold, path in available.items() if fold != "all"}
    return numbered or available


def open_model_folder(root: Path, folds: Optional[Sequence[str]] = None) -> ModelFolder:
    """Locate and read an nnU-Net model folder; every problem is a ModelError naming what is missing."""
    trainer_dir = find_trainer_dir(Path(root))
    return ModelFolder(trainer_dir=trainer_dir,
                       dataset_json=_read_json(trainer_dir / "dataset.json"),
                       plans=_read_json(trainer_dir / "plans.json"),
                       checkpoints=choose_checkpoints(trainer_dir, folds))
