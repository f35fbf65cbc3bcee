"""Spinal nerve rootlets segmentation and spinal levels on MRI, compatible with the Spinal Cord Toolbox.

The stages, in the order data flows through them (README, "Architecture"): `io` (files in and out) ->
`store` (where a model comes from) -> `inference` (where it runs) -> `anatomy` (cord, levels, post-processing) ->
`qc` (reports, metrics) -> `segment` (the public API: `segment_rootlets`, `segment_cord`) -> `batch` and
`training` -> `cli`. `synthetic` makes training data. `errors`, `paths` and `options` are shared by all and import
nothing of the package. The layers are a contract, checked in CI (`.importlinter`).
"""

__version__ = "0.1.0"
