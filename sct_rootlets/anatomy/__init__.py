"""Anatomy from label maps: the cord mask (`cord`, the bundled cord model), the cord's centerline (`centerline`),
spinal levels from rootlets (`levels` on arrays, `spinal_levels` on files) and per-level post-processing of
rootlet maps (`postprocess`).

May import `sct_rootlets.inference`, `sct_rootlets.store` and `sct_rootlets.io`; not QC, batch or the CLI.
"""
