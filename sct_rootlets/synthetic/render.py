"""Synthetic T2w-like volumes with exact rootlet labels, rendered from the PAM50 template's label maps.

The idea of SynthSeg (Billot et al. 2023): images drawn from label maps with randomised geometry and appearance,
so that a network trained on them learns shape, not one scanner's contrast. Each volume:
1. samples the PAM50 tissues (cord WM/GM, CSF, vertebral column, soft tissue) and rootlet zones through a random
   flexion/extension rotation, scaling, shift and smooth non-linear deformation onto the requested grid;
2. draws rootlets as thin curved strands (0.3-1 mm thick, several per zone) from the cord surface laterally and
   caudally through each level's zone, rasterised on a 3x supersampled grid: each voxel is darkened in
   proportion to the fraction of it the strands cover (partial volume), and labelled with the level where they
   cover at least a quarter of it, i.e. where the darkening shows, as a rater marks the dark voxels (a strand
   thinner than about half a voxel leaves a faint trace and no label);
3. renders random tissue intensities (T2w-like by default; with `random_contrast`, each tissue's mean drawn
   anew from 0..1, as SynthSeg does, for models that must work in any contrast), a smooth bias field, blur and
   Rician noise.
The label maps come with the package (sct_rootlets/data/pam50, LGPL-3.0 data from SCT: see the LICENSE there), so
that generation runs on a fresh machine; another PAM50 folder can be given. A seed makes every volume reproducible.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from tqdm import tqdm

from sct_rootlets.io.image import sct_orientation_to_axcodes

# Tissue classes of the rendered label map.
SOFT, BONE, CSF, WM, GM = range(5)
#: Mean T2w intensity of each class (CSF = 1) before randomisation, and of rootlets.
MEAN_INTENSITY = {SOFT: 0.30, BONE: 0.18, CSF: 0.95, WM: 0.42, GM: 0.52}
ROOTLET_INTENSITY = 0.30
SUPERSAMPLING = 3
#: Share of a voxel strands must cover for the voxel to be labelled.
LABEL_MIN_COVERAGE = 0.25
_TEMPLATE_MARGIN_MM = 40.0
#: The PAM50 maps load_template reads, as shipped with the package (unchanged copies of SCT's template files).
SHIPPED_PAM50 = Path(__file__).resolve().parents[1] / "data" / "pam50"  # sct_rootlets/data/pam50

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthOptions:
    """Geometry (RAS axis order: left-right, posterior-anterior, inferior-superior) and randomisation ranges."""
    shape: tuple = (64, 320, 320)
    voxel_size: tuple = (0.8, 0.8, 0.8)
    orientation: str = "RPI"                  # SCT orientation of the written files
    max_rotation_deg: float = 10.0            # neck flexion/extension (about left-right)
    scale_range: tuple = (0.9, 1.1)
    max_shift_mm: float = 15.0
    deformation_mm: float = 2.0
    bundles_per_zone: tuple = (1, 2)
    strands_per_bundle: tuple = (4, 8)
    bundle_radius_mm: float = 1.0             # how far a bundle's strands spread about its axis
    strand_diameter_mm: tuple = (0.3, 1.0)
    intensity_jitter: float = 0.2             # relative, per tissue
    random_contrast: bool = False             # tissue means drawn from 0..1 instead of jittered T2w means
    noise_range: tuple = (0.01, 0.04)         # Rician sigma, relative to CSF
    bias_strength: float = 0.3
    blur_range: tuple = (0.0, 0.6)            # Gaussian sigma, voxels


@dataclass
class Template:
    """PAM50 maps needed for rendering (cropped around the rootlets), on the template's 0.5 mm grid."""
    tissues: np.ndarray
    zones: np.ndarray          # rootlet regions, 2..9
    discs: np.ndarray          # disc points dilated to small balls (SCT values)
    affine: np.ndarray
    pmj_world: Optional[np.ndarray] = None

    @property
    def rootlets_centre_world(self) -> np.ndarray:
        return self.affine[:3, :3] @ np.argwhere(self.zones).mean(axis=0) + self.affine[:3, 3]


def load_template(pam50: Optional[Path] = None, pmj_label: Optional[Path] = None) -> Template:
    """Read PAM50 from `pam50` (folder with PAM50_*.nii.gz; default: the maps shipped with the package, so results
    do not depend on which SCT is installed). `pmj_label` is pam50_small's PMJ point: its position is mapped by
    voxel index x voxel size (the two templates share their voxel origin)."""
    pam50 = SHIPPED_PAM50 if pam50 is None else Path(pam50)
    source = "the copy shipped with sct_rootlets" if pam50 == SHIPPED_PAM50 else "the given folder"
    logger.info("PAM50 label maps: %s (%s)", source, pam50)

    def read(name):
        path = pam50 / f"PAM50_{name}.nii.gz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; give a PAM50 template folder "
                                    f"(e.g. $SCT_DIR/data/PAM50/template).")
        return nib.load(path)

    zones_image = read("rootlets")
    zones = np.asanyarray(zones_image.dataobj).astype(np.uint8)
    margin = int(_TEMPLATE_MARGIN_MM / 0.5)
    z = np.flatnonzero(zones.any(axis=(0, 1)))
    low, high = max(0, z.min() - 4 * margin), min(zones.shape[2], z.max() + 2 * margin)
    crop = (slice(None), slice(None), slice(low, high))
    tissues = np.full(zones[crop].shape, SOFT, np.uint8)
    tissues[np.asanyarray(read("spine").dataobj)[crop] > 0] = BONE
    tissues[np.asanyarray(read("csf").dataobj)[crop] > 0] = CSF
    tissues[np.asanyarray(read("cord").dataobj)[crop] > 0] = WM
    tissues[np.asanyarray(read("gm").dataobj)[crop] > 0.5] = GM
    discs_points = np.asanyarray(read("label_disc").dataobj)[crop].astype(np.uint8)
    discs = ndimage.grey_dilation(discs_points, footprint=_ball(3))
    affine = zones_image.affine.copy()
    affine[:3, 3] = zones_image.affine[:3, :3] @ [0, 0, low] + zones_image.affine[:3, 3]
    pmj_world = None
    if pmj_label is not None:
        small = nib.load(pmj_label)
        mm_from_origin = np.argwhere(np.asanyarray(small.dataobj) > 0).mean(axis=0) * small.header.get_zooms()[:3]
        pmj_world = zones_image.affine[:3, :3] @ (mm_from_origin / 0.5) + zones_image.affine[:3, 3]
    return Template(tissues=tissues, zones=zones[crop], discs=discs, affine=affine, pmj_world=pmj_world)


def _ball(radius: int) -> np.ndarray:
    grid = np.ogrid[tuple(slice(-radius, radius + 1) for _ in range(3))]
    return sum(g ** 2 for g in grid) <= radius ** 2


@dataclass
class SyntheticCase:
    """One rendered volume and its exact labels, all on `affine` (RAS axes)."""
    image: np.ndarray
    rootlets: np.ndarray
    coverage: np.ndarray       # fraction of each voxel covered by strands (0..1)
    cord: np.ndarray
    discs: np.ndarray
    pmj: Optional[np.ndarray]
    affine: np.ndarray


def _rotation_about_x(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _smooth_field(rng, shape, amplitude, control_points=5) -> np.ndarray:
    coarse = rng.normal(0, amplitude, (control_points,) * 3)
    return ndimage.zoom(coarse, [s / control_points for s in shape], order=3, mode="nearest")[
        :shape[0], :shape[1], :shape[2]]


class _Geometry:
    """Output grid (RAS) and the random map from output voxels to template voxels (pull sampling)."""

    def __init__(self, template: Template, options: SynthOptions, rng):
        shape, voxel = np.array(options.shape), np.array(options.voxel_size, float)
        self.affine = np.diag([*voxel, 1.0])
        centre_t = template.rootlets_centre_world + rng.uniform(-1, 1, 3) * [2, 2, options.max_shift_mm]
        self.affine[:3, 3] = centre_t - voxel * (shape - 1) / 2
        self.linear = _rotation_about_x(rng.uniform(-1, 1) * options.max_rotation_deg) / rng.uniform(
            *options.scale_range)
        self.centre = centre_t
        self.displacement = [_smooth_field(rng, options.shape, options.deformation_mm) for _ in range(3)]
        self.template_inverse = np.linalg.inv(template.affine)
        self.shape = tuple(options.shape)

    def template_coordinates(self) -> np.ndarray:
        """(3, X, Y, Z) template voxel coordinates of every output voxel."""
        index = np.indices(self.shape, dtype=np.float32).reshape(3, -1)
        world = self.affine[:3, :3] @ index + self.affine[:3, 3:4]
        warped = self.linear @ (world - self.centre[:, None]) + self.centre[:, None]
        warped += np.stack([d.ravel() for d in self.displacement])
        voxel = self.template_inverse[:3, :3] @ warped + self.template_inverse[:3, 3:4]
        return voxel.reshape(3, *self.shape).astype(np.float32)

    def output_index_of_world(self, world_t: np.ndarray) -> np.ndarray:
        """Template world point -> output voxel index, through the inverse of the linear part (the small
        non-linear displacement is ignored for points that lie outside the template, such as the PMJ)."""
        world = np.linalg.solve(self.linear, world_t - self.centre) + self.centre
        return np.linalg.solve(self.affine[:3, :3], world - self.affine[:3, 3])


def _strand_points(start, control, end, voxel) -> np.ndarray:
    """Points (output voxel units) along the quadratic Bezier from start to end bowed towards control."""
    length_mm = np.linalg.norm((end - start) * voxel) + 1e-3
    t = np.linspace(0, 1, max(8, int(length_mm / 0.1)))[:, None]
    return (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t ** 2 * end


def _covered_subvoxels(points: np.ndarray, radius_mm: float, voxel: np.ndarray) -> np.ndarray:
    """Unique supersampled voxel indices whose centres lie within radius of the polyline points."""
    sub = voxel / SUPERSAMPLING
    reach = np.ceil(radius_mm / sub).astype(int) + 1
    offsets = np.stack(np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), -1).reshape(-1, 3)
    base = np.floor((points + 0.5) * SUPERSAMPLING).astype(int)
    candidates = np.unique((base[:, None, :] + offsets[None]).reshape(-1, 3), axis=0)
    centres = (candidates + 0.5) / SUPERSAMPLING - 0.5
    distance, _ = cKDTree(points * voxel).query(centres * voxel)
    return candidates[distance <= radius_mm]


def draw_rootlets(rng, zones: np.ndarray, cord: np.ndarray, options: SynthOptions,
                  outward_mm: Optional[np.ndarray] = None) -> tuple:
    """(labels, coverage fraction): bundles of strands from the cord surface through each zone, caudally and
    outwards. A bundle's strands start and end within `bundle_radius_mm` of its own two ends, as rootlets run
    together in bundles (each still a thin strand of its own). Strands end where `outward_mm` (default: the
    distance from the cord) is large; the arrays are on a RAS grid of `options.voxel_size`."""
    voxel = np.array(options.voxel_size, float)
    shape = np.array(zones.shape)
    distance_mm = ndimage.distance_transform_edt(~cord, sampling=voxel) if cord.any() else np.full(zones.shape, 9.)
    outward_mm = distance_mm if outward_mm is None else outward_mm
    labels = np.zeros(zones.shape, np.uint8)
    counts = np.zeros(zones.shape, np.uint16)

    def spread():
        return rng.normal(0, options.bundle_radius_mm / 2, 3) / voxel

    for level in np.unique(zones[zones > 0]):
        pieces, n_pieces = ndimage.label(zones == level)
        for piece in range(1, n_pieces + 1):
            voxels = np.argwhere(pieces == piece)
            d, out = distance_mm[tuple(voxels.T)], outward_mm[tuple(voxels.T)]
            near, far = voxels[d <= d.min() + 1.0], voxels[out >= np.percentile(out, 80)]
            for _ in range(rng.integers(options.bundles_per_zone[0], options.bundles_per_zone[1] + 1)):
                start = near[rng.integers(len(near))] + rng.uniform(-0.5, 0.5, 3)
                caudal = far[far[:, 2] <= start[2]]
                pool = caudal if len(caudal) else far
                end = pool[rng.integers(len(pool))] + rng.uniform(-0.5, 0.5, 3)
                bow = (start + end) / 2 + rng.normal(0, 1.5, 3) / voxel
                for _ in range(rng.integers(options.strands_per_bundle[0], options.strands_per_bundle[1] + 1)):
                    radius = rng.uniform(*options.strand_diameter_mm) / 2
                    points = _strand_points(start + spread(), bow + spread(), end + spread(), voxel)
                    sub = _covered_subvoxels(points, radius, voxel)
                    sub = sub[np.all((sub >= 0) & (sub < shape * SUPERSAMPLING), axis=1)]
                    owner = sub // SUPERSAMPLING
                    np.add.at(counts, tuple(owner.T), 1)
                    labels[tuple(owner.T)] = level
    coverage = (np.minimum(counts, SUPERSAMPLING ** 3) / SUPERSAMPLING ** 3).astype(np.float32)
    labels[coverage < LABEL_MIN_COVERAGE] = 0
    return labels, coverage


def _tissue_mean(rng, t2w_mean: float, options: SynthOptions) -> float:
    """One tissue's mean: its T2w mean jittered, or with `random_contrast` any value in 0.05..1."""
    if options.random_contrast:
        return float(rng.uniform(0.05, 1.0))
    return t2w_mean * (1 + rng.uniform(-1, 1) * options.intensity_jitter)


def _render(rng, tissues: np.ndarray, coverage: np.ndarray, options: SynthOptions) -> np.ndarray:
    lookup = np.array([_tissue_mean(rng, MEAN_INTENSITY[c], options) for c in range(len(MEAN_INTENSITY))],
                      np.float32)
    image = lookup[tissues]
    image *= 1 + 0.08 * _smooth_field(rng, tissues.shape, 1.0, control_points=12)  # tissue texture
    rootlet = _tissue_mean(rng, ROOTLET_INTENSITY, options)
    image = image * (1 - coverage) + rootlet * coverage
    image *= np.exp(options.bias_strength * _smooth_field(rng, tissues.shape, 1.0, control_points=3))
    blur = rng.uniform(*options.blur_range)
    if blur > 0:
        image = ndimage.gaussian_filter(image, blur)
    sigma = rng.uniform(*options.noise_range)
    noisy = np.sqrt((image + rng.normal(0, sigma, image.shape)) ** 2 + rng.normal(0, sigma, image.shape) ** 2)
    return noisy.astype(np.float32)


def generate_case(template: Template, seed: int, options: SynthOptions = SynthOptions()) -> SyntheticCase:
    """One volume; the same template, seed and options always give the same result."""
    rng = np.random.default_rng(seed)
    geometry = _Geometry(template, options, rng)
    coordinates = geometry.template_coordinates()
    tissues = ndimage.map_coordinates(template.tissues, coordinates, order=0, mode="constant", cval=SOFT)
    zones = ndimage.map_coordinates(template.zones, coordinates, order=0, mode="constant", cval=0)
    discs_blobs = ndimage.map_coordinates(template.discs, coordinates, order=0, mode="constant", cval=0)
    cord = np.isin(tissues, (WM, GM))
    rootlets, coverage = draw_rootlets(rng, zones, cord, options)
    image = _render(rng, tissues, coverage, options)
    discs = np.zeros(options.shape, np.uint8)
    for value in np.unique(discs_blobs[discs_blobs > 0]):
        discs[tuple(np.round(np.argwhere(discs_blobs == value).mean(axis=0)).astype(int))] = value
    pmj = None
    if template.pmj_world is not None:
        index = np.round(geometry.output_index_of_world(template.pmj_world)).astype(int)
        if np.all((index >= 0) & (index < options.shape)):
            pmj = np.zeros(options.shape, np.uint8)
            pmj[tuple(index)] = 1
    return SyntheticCase(image=image, rootlets=rootlets, coverage=coverage, cord=cord.astype(np.uint8),
                         discs=discs, pmj=pmj, affine=geometry.affine)


def _save(data: np.ndarray, affine: np.ndarray, orientation: str, path: Path, dtype) -> None:
    image = nib.Nifti1Image(data.astype(dtype), affine)
    target = nib.orientations.axcodes2ornt(sct_orientation_to_axcodes(orientation))
    stored = image.as_reoriented(nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), target))
    stored.set_qform(stored.affine, code=1)
    stored.set_sform(stored.affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(stored, path)


def write_case(case: SyntheticCase, dataset: Path, subject: str, options: SynthOptions) -> Path:
    """BIDS: sub-XXX/anat/sub-XXX_T2w.nii.gz, labels under derivatives/labels/sub-XXX/anat/."""
    stem = f"{subject}_T2w"
    image_path = Path(dataset) / subject / "anat" / f"{stem}.nii.gz"
    labels = Path(dataset) / "derivatives" / "labels" / subject / "anat"
    scale = 1000.0 / max(float(np.percentile(case.image, 99.9)), 1e-6)
    _save(np.clip(case.image * scale, 0, 32767), case.affine, options.orientation, image_path, np.int16)
    _save(case.rootlets, case.affine, options.orientation, labels / f"{stem}_label-rootlets_dseg.nii.gz", np.uint8)
    _save(case.cord, case.affine, options.orientation, labels / f"{stem}_label-SC_seg.nii.gz", np.uint8)
    _save(case.discs, case.affine, options.orientation, labels / f"{stem}_label-disc_dlabel.nii.gz", np.uint8)
    if case.pmj is not None:
        _save(case.pmj, case.affine, options.orientation, labels / f"{stem}_label-PMJ_dlabel.nii.gz", np.uint8)
    return image_path


def subject_name(number: int) -> str:
    return f"sub-{number:03d}"


def generate_dataset(template: Template, output: Path, *, count: int, seed: int,
                     options: SynthOptions = SynthOptions(), first_subject: int = 1, progress: bool = False) -> list:
    """`count` subjects from sub-<first_subject> on, with seeds seed, seed+1, ...; returns the image paths.
    `progress` shows a bar (a volume takes seconds, a training set hours)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "dataset_description.json").write_text(
        '{"Name": "sct_rootlets synthetic rootlets", "BIDSVersion": "1.9.0", "DatasetType": "raw"}\n')
    indices = tqdm(range(count), desc="generating", unit="volume", disable=not progress)
    return [write_case(generate_case(template, seed + index, options), output, subject_name(first_subject + index),
                       options) for index in indices]
