"""Choices shared by the commands and the library, importable without numerical libraries (fast -h)."""

#: Spinal-level definitions, see `sct_rootlets.anatomy.levels`.
LEVEL_METHODS = ("extent", "gapfree")
#: sct_maths -dilate footprints, see `sct_rootlets.anatomy.postprocess`.
DILATION_SHAPES = ("ball", "cube", "disk", "square")
#: Network execution engines, see `sct_rootlets.inference.engines`.
ENGINES = ("auto", "torch", "openvino", "openvino-bf16")
#: How the network covers an image whose cord mask is known, see `sct_rootlets.inference.session.InferenceSession`.
REGION_MODES = ("whole", "exact", "fast")
#: What a run without -region uses (measured: bench/RESULTS.md, "Fast by default").
DEFAULT_REGION = "fast"
#: Rootlets lie within about 15 mm of the cord: the default margin around its bounding box.
DEFAULT_ROI_MARGIN_MM = 20.0
#: Rootlets run inside the spinal canal: every PAM50 rootlet voxel lies within 7.5 mm of the cord (99th percentile
#: 6.5 mm). Labels farther from a cord mask are removed; the rest is room for a computed cord's error, wider canals.
DEFAULT_CANAL_MM = 12.0
#: What `-cord-model` takes for the cord model bundled with sct_rootlets (the default), whatever its version.
BUNDLED_CORD_MODEL = "bundled"
#: SCT's contrast-agnostic cord model (model card `sct-contrast-agnostic`), used from SCT's folder when SCT has it.
CONTRAST_AGNOSTIC_CORD_MODEL = "sct-contrast-agnostic"
