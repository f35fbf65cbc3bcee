"""Where each spinal level's rootlets run along the cord, between two vertebral landmarks.

From the PAM50 template (its rootlet regions and discs, shipped with the package): each level's superior-inferior
extent as a fraction of the distance from the C2 vertebral body's centre (0) to the T2 body's centre (1), each
centre taken halfway between the discs above and below it. A scan's own C2 and T2 centres then place the levels,
so the bands stretch with the subject's neck. C1 above and T2, T3 below are added (as rootlets that exist but
carry no label of the C2-T1 set), spaced as their neighbours.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from sct_rootlets.synthetic.render import Template

#: SCT disc values around the C2 and T2 bodies (disc 2 is C1-C2, disc 3 C2-C3; disc 9 T1-T2, disc 10 T2-T3).
C2_DISCS, T2_DISCS = (2, 3), (9, 10)
#: Level values of the unlabelled neighbours (C1 above C2; T2, T3 below T1).
UNLABELLED_LEVELS = (1, 10, 11)


@dataclass(frozen=True)
class Band:
    level: int
    top: float        # fractions of the C2 -> T2 centre distance (0 at C2, 1 at T2, negative above C2)
    bottom: float

    @property
    def labelled(self) -> bool:
        return self.level not in UNLABELLED_LEVELS

    def superior_range_mm(self, c2_superior: float, t2_superior: float, shift: float = 0.0) -> tuple:
        """(low, high) world superior coordinates of the band in a scan with these landmark coordinates."""
        span = c2_superior - t2_superior
        return c2_superior - (self.bottom + shift) * span, c2_superior - (self.top + shift) * span


def level_bands(template: Template) -> list:
    """Bands of levels C1..T3 (values 1..11), from rostral to caudal."""
    superior = template.affine[2, 2]  # template voxels: axis 2 runs inferior-superior

    def disc_z(value):
        return ndimage.center_of_mass(template.discs == value)[2]

    c2 = np.mean([disc_z(v) for v in C2_DISCS])
    t2 = np.mean([disc_z(v) for v in T2_DISCS])
    span = (c2 - t2) * superior

    def fraction(z):
        return (c2 - z) * superior / span

    bands = []
    for level in range(2, 10):
        z = np.flatnonzero((template.zones == level).any(axis=(0, 1)))
        bands.append(Band(level, top=fraction(z.max()), bottom=fraction(z.min())))
    first, second = bands[0], bands[1]
    step_up = second.top - first.top
    above = Band(1, top=first.top - step_up, bottom=first.top - step_up + (first.bottom - first.top))
    step_down = bands[-1].top - bands[-2].top
    below = [Band(9 + k, top=bands[-1].top + k * step_down, bottom=bands[-1].bottom + k * step_down)
             for k in (1, 2)]
    return [above, *bands, *below]


def landmark_superior(points: np.ndarray, affine: np.ndarray, value: int) -> Optional[float]:
    """World superior coordinate of a landmark label value, or None when the label map lacks it."""
    index = np.argwhere(points == value)
    if not len(index):
        return None
    return float((affine[:3, :3] @ index.mean(axis=0) + affine[:3, 3])[2])
