"""Where sct_rootlets keeps its files: `$SCT_ROOTLETS_HOME`, else the platform's user data folder."""

import os
from pathlib import Path

import platformdirs

HOME_ENV_VAR = "SCT_ROOTLETS_HOME"


def rootlets_home() -> Path:
    """The root folder of installed models, lab model cards and partial downloads."""
    configured = os.environ.get(HOME_ENV_VAR)
    return Path(configured).expanduser() if configured else Path(platformdirs.user_data_dir("sct_rootlets"))


def models_dir() -> Path:
    """Installed models, one folder per model name."""
    return rootlets_home() / "models"


def cards_dir() -> Path:
    """A lab's own model cards, listed and installable like the bundled ones."""
    return rootlets_home() / "cards"


def downloads_dir() -> Path:
    """Archives being downloaded; a partial one here is resumed by the next install."""
    return rootlets_home() / "downloads"


def cache_dir() -> Path:
    """Derived files kept to save time (engine conversions) when they cannot live beside the model."""
    return rootlets_home() / "cache"
