"""NIfTI input and output: validation, orientation and writing on the input's exact grid.

This is the one module that knows about orientations. Two conventions meet here:
- nibabel axis codes name the direction each voxel axis points *to*: ('R', 'A', 'S') is RAS+.
- SCT orientation strings name the side each axis comes *from*: SCT's "LPI" is nibabel's ('R', 'A', 'S').
Convert between them with `sct_orientation_to_axcodes`, never ad hoc.
"""

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations

from sct_rootlets.errors import InputImageError

#: More voxels than this is not an MRI volume a 3D network can process on one machine (~4 GB as float32).
MAX_VOXELS = 1_000_000_000

_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}
_AXIS_OF = {"L": "x", "R": "x", "A": "y", "P": "y", "S": "z", "I": "z"}
NIFTI_EXTENSIONS = (".nii", ".nii.gz")


def sct_orientation_to_axcodes(sct_orientation: str) -> tuple:
    """SCT orientation string (e.g. "LPI", "RPI", "AIL") -> nibabel axis codes (e.g. ('R', 'A', 'S')).

    Raises ValueError unless the string names each of the three anatomical axes exactly once.
    """
    code = sct_orientation.upper()
    if len(code) != 3 or any(c not in _AXIS_OF for c in code) or len({_AXIS_OF[c] for c in code}) != 3:
        raise ValueError(f"{sct_orientation!r} is not an orientation such as 'LPI' or 'RPI'")
    return tuple(_OPPOSITE[c] for c in code)


def axcodes_to_sct_orientation(axcodes) -> str:
    """nibabel axis codes -> SCT orientation string; the inverse of `sct_orientation_to_axcodes`."""
    return "".join(_OPPOSITE[a] for a in axcodes)


def image_sct_orientation(affine: np.ndarray) -> str:
    """SCT orientation string of the closest anatomical axes of a (possibly oblique) affine."""
    return axcodes_to_sct_orientation(orientations.aff2axcodes(affine))


@dataclass(frozen=True)
class Reorientation:
    """A flip/permutation between an image's voxel axes and a target orientation, both ways.

    `to_target` and `from_target` are nibabel orientation arrays (one row per input axis: new axis, flip),
    as used by `nibabel.orientations.apply_orientation`.
    """
    to_target: np.ndarray
    from_target: np.ndarray

    @classmethod
    def between(cls, affine: np.ndarray, target_axcodes) -> "Reorientation":
        current = orientations.io_orientation(affine)
        target = orientations.axcodes2ornt(target_axcodes)
        return cls(orientations.ornt_transform(current, target), orientations.ornt_transform(target, current))

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Input voxel order -> target voxel order (a view where possible)."""
        return orientations.apply_orientation(data, self.to_target)

    def revert(self, data: np.ndarray) -> np.ndarray:
        """Target voxel order -> input voxel order."""
        return orientations.apply_orientation(data, self.from_target)

    def apply_to_zooms(self, zooms) -> tuple:
        """Voxel sizes in input axis order -> voxel sizes in target axis order."""
        return _permuted(zooms, self.to_target)

    def revert_zooms(self, zooms) -> tuple:
        """Voxel sizes in target axis order -> voxel sizes in input axis order."""
        return _permuted(zooms, self.from_target)


def _permuted(values, ornt: np.ndarray) -> tuple:
    out = [0.0, 0.0, 0.0]
    for axis, (new_axis, _flip) in enumerate(ornt):
        out[int(new_axis)] = float(values[axis])
    return tuple(out)


@dataclass(frozen=True)
class InputImage:
    """A validated 3D image: the NIfTI as loaded (header, affine) and its voxels as float64."""
    path: Path
    nifti: nib.Nifti1Image
    data: np.ndarray

    @property
    def zooms(self) -> tuple:
        return tuple(float(z) for z in self.nifti.header.get_zooms()[:3])


def _strip_nifti_extension(name: str) -> str:
    for ext in NIFTI_EXTENSIONS[::-1]:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def nifti_stem(path: Path) -> str:
    """'sub-01_T2w' for 'sub-01_T2w.nii.gz'."""
    return _strip_nifti_extension(Path(path).name)


def _check_shape(path: Path, shape: tuple) -> None:
    """A 3D image may be stored with trailing singleton dimensions, (x, y, z, 1, 1) say: it is still 3D."""
    if len(shape) == 4 and shape[3] != 1:
        raise InputImageError(f"{path} is 4D with {shape[3]} volumes; give one 3D volume.")
    if len(shape) < 3 or any(n != 1 for n in shape[3:]):
        raise InputImageError(f"{path} has {len(shape)} dimensions {shape}; a 3D image is required.")
    if min(shape[:3]) < 2:
        raise InputImageError(f"{path} is 2D (shape {shape[:3]}); a 3D image is required.")
    n_voxels = int(np.prod(shape, dtype=np.float64))
    if n_voxels > MAX_VOXELS:
        raise InputImageError(f"{path} declares {n_voxels:.3g} voxels (shape {shape}), more than an MRI volume "
                              f"can have; the header is corrupt.")


def _check_affine(path: Path, affine: np.ndarray) -> None:
    linear = affine[:3, :3]
    if not np.all(np.isfinite(affine)) or np.linalg.cond(linear) > 1e8:
        raise InputImageError(f"{path} has a non-invertible voxel-to-world affine; fix its header "
                              f"(qform/sform) before segmenting.")


def load_input_image(path) -> InputImage:
    """Load and validate a 3D NIfTI; every failure is an InputImageError with one sentence for the user."""
    path = Path(path)
    if path.is_dir():
        raise InputImageError(f"{path} is a folder; give a NIfTI image (.nii or .nii.gz) inside it.")
    if not path.is_file():
        raise InputImageError(f"{path} does not exist.")
    if not path.name.endswith(NIFTI_EXTENSIONS):
        raise InputImageError(f"{path} is not a NIfTI image (.nii or .nii.gz).")
    try:
        nifti = nib.load(path)
    except nib.filebasedimages.ImageFileError:
        raise InputImageError(f"{path} is not a NIfTI image (.nii or .nii.gz).") from None
    except (OSError, EOFError, zlib.error, ValueError):
        raise InputImageError(f"{path} cannot be read: the file is truncated or corrupt.") from None
    if not isinstance(nifti, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputImageError(f"{path} is not a NIfTI image (.nii or .nii.gz).")
    _check_shape(path, nifti.shape)
    _check_affine(path, nifti.affine)
    if nifti.get_data_dtype().kind not in "biuf":
        raise InputImageError(f"{path} stores {nifti.get_data_dtype()} voxels; real-valued intensities are required.")
    try:
        data = np.asarray(nifti.get_fdata(dtype=np.float64))
    except (OSError, EOFError, zlib.error, ValueError):
        raise InputImageError(f"{path} cannot be read: the file is truncated or corrupt.") from None
    data = data.reshape(nifti.shape[:3])
    if not np.all(np.isfinite(data)):
        raise InputImageError(f"{path} contains NaN or infinite voxel values.")
    if not np.any(data):
        raise InputImageError(f"{path} contains only zeros.")
    return InputImage(path=path, nifti=nifti, data=data)


#: Where the system does not report its memory (e.g. Windows), a large workstation's.
_FALLBACK_MEMORY_BYTES = 64 * 2**30


def physical_memory_bytes() -> int:
    """This machine's memory as the system reports it (POSIX), else 64 GiB."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return _FALLBACK_MEMORY_BYTES


def _mm(sizes) -> str:
    return "x".join(f"{size:g}" for size in sizes)


def check_resampling_memory(image: InputImage, target_mm, n_classes: int) -> None:
    """Refuse, before nnU-Net allocates it, a resampling to the model's voxel size that cannot fit in memory:
    an absurd voxel size (1000 mm, say) would otherwise end in a memory traceback.

    `target_mm` is the model's voxel size in the image's axis order. nnU-Net's new grid has, per axis, the length
    times the voxel size over the target's, rounded; on it nnU-Net holds at least the image (float32), a score per
    class and a count of overlapping tiles (half precision each).
    """
    shape = [round(n * size / target) for n, size, target in zip(image.data.shape, image.zooms, target_mm)]
    needed = float(np.prod(shape, dtype=np.float64)) * (4 + 2 * (n_classes + 1))
    available = physical_memory_bytes()
    if needed > available:
        raise InputImageError(f"{image.path} has {_mm(image.zooms)} mm voxels: resampled to the model's "
                              f"{_mm(target_mm)} mm voxels it would need about {needed / 2**30:.3g} GiB of memory, "
                              f"more than this machine's {available / 2**30:.3g} GiB; check the voxel size in its "
                              f"header.")


def label_image_like(labels: np.ndarray, reference: nib.Nifti1Image) -> nib.Nifti1Image:
    """A uint8 label map on the reference's exact grid: same shape, affine, qform/sform and their codes."""
    if labels.shape != reference.shape[:3]:
        raise ValueError(f"label map shape {labels.shape} differs from the reference grid {reference.shape[:3]}")
    header = reference.header.copy()
    header.set_data_dtype(np.uint8)
    image = type(reference)(labels.astype(np.uint8), None, header)
    image.header.set_slope_inter(1, 0)
    image.header["cal_min"], image.header["cal_max"] = 0, int(labels.max(initial=0))
    image.set_qform(reference.get_qform(), code=int(reference.header["qform_code"]))
    image.set_sform(reference.get_sform(), code=int(reference.header["sform_code"]))
    return image


def stored_dtype(nifti: nib.Nifti1Image) -> np.dtype:
    """The voxel type a reader that does not convert (SCT's Image) sees: the file's type, float if scaled."""
    return np.asanyarray(nifti.dataobj[(slice(0, 1),) * len(nifti.shape)]).dtype


def load_label_image(path, what: str = "label map") -> InputImage:
    """Load a label map or mask (rootlets, cord, discs, PMJ): a valid 3D image with whole-number values.

    Unlike intensity images it may be all zeros (e.g. no rootlet found).
    """
    path = Path(path)
    try:
        image = load_input_image(path)
    except InputImageError as exc:
        if "contains only zeros" not in str(exc):
            raise InputImageError(f"The {what} {exc}") from None
        nifti = nib.load(path)
        return InputImage(path=path, nifti=nifti, data=np.zeros(nifti.shape[:3]))
    if not np.array_equal(image.data, np.round(image.data)) or image.data.min() < 0:
        raise InputImageError(f"The {what} {path} must hold non-negative whole-number labels.")
    return image


def check_same_grid(reference: InputImage, *others: InputImage) -> None:
    """Every image must be on the reference's voxel grid (shape and affine), as SCT's label tools require."""
    for other in others:
        same_shape = other.nifti.shape[:3] == reference.nifti.shape[:3]
        if not same_shape or not np.allclose(other.nifti.affine, reference.nifti.affine, atol=1e-3):
            raise InputImageError(f"{other.path} is not on the voxel grid of {reference.path}; resample it onto "
                                  f"that image first (e.g. sct_register_multimodal -identity 1 -x nn).")
