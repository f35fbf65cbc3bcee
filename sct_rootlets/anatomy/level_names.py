"""Names of label values: spinal levels (rootlets) and SCT's vertebral levels. Kept apart from `levels` (which
imports pandas) so that naming a level loads nothing."""


def spinal_level_name(value: int) -> str:
    """Rootlets/spinal-level label value -> name: 2 -> C2 ... 8 -> C8, 9 -> T1, 10 -> T2 ..."""
    return f"C{value}" if value <= 8 else f"T{value - 8}"


def vertebral_level_name(value: int) -> str:
    """SCT vertebral level value -> name: 1..7 -> C1..C7, 8..19 -> T1..T12, 20.. -> L1.."""
    if value <= 7:
        return f"C{value}"
    return f"T{value - 7}" if value <= 19 else f"L{value - 19}"
