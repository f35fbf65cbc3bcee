"""Choices shared by the commands and the library, importable without numerical libraries (fast -h)."""

#: Spinal-level definitions, see `sct_rootlets.levels`.
LEVEL_METHODS = ("extent", "gapfree")
#: sct_maths -dilate footprints, see `sct_rootlets.postprocess`.
DILATION_SHAPES = ("ball", "cube", "disk", "square")
#: Network execution engines, see `sct_rootlets.engine`.
ENGINES = ("torch", "openvino")
