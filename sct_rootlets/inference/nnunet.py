"""Which nnU-Net v2 this environment has: stock `nnunetv2` or SCT's fork `nnunetv2-neuropoly`.

Both distributions install the same `nnunetv2` import package, so neither is a hard requirement of sct_rootlets
(setup.cfg): standalone installs take stock nnU-Net from the `nnunet` extra, SCT's environment already has the
fork. Everything that builds, runs or trains a network asks here first, so a missing nnU-Net is one sentence.
"""

import contextlib
import io
import sys
from importlib import metadata

from sct_rootlets.errors import ModelError

#: The distributions that provide the `nnunetv2` import package, in the order they are reported.
DISTRIBUTIONS = ("nnunetv2", "nnunetv2-neuropoly")


def require_nnunet() -> str:
    """'<distribution> <version>' of the installed nnU-Net v2; ModelError when `nnunetv2` cannot be imported."""
    try:
        import nnunetv2  # noqa: F401
        # SCT's fork prints three "nnUNet_raw is not defined" lines at this import when its folder variables are
        # unset; inference and our training (which sets them around its calls) need none of them.
        with contextlib.redirect_stdout(io.StringIO()):
            import nnunetv2.paths  # noqa: F401
    except ImportError:
        raise ModelError(f"nnU-Net v2 is not installed in this Python environment ({sys.prefix}): install "
                         f"sct_rootlets with its nnunet extra (pip install 'sct_rootlets[nnunet]'), or run it "
                         f"from SCT's environment, whose nnunetv2-neuropoly provides it.") from None
    for name in DISTRIBUTIONS:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "nnunetv2 (version unknown)"
