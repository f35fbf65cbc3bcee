"""Choices shared by the commands and the library, importable without numerical libraries (fast -h)."""

#: Spinal-level definitions, see `sct_rootlets.levels`.
LEVEL_METHODS = ("extent", "gapfree")
#: sct_maths -dilate footprints, see `sct_rootlets.postprocess`.
DILATION_SHAPES = ("ball", "cube", "disk", "square")
#: Network execution engines, see `sct_rootlets.engine`.
ENGINES = ("auto", "torch", "openvino", "openvino-bf16")
#: How the network covers an image whose cord mask is known, see `sct_rootlets.inference.InferenceSession`.
REGION_MODES = ("whole", "exact", "fast")
#: What a run without -region uses (measured: bench/RESULTS.md, "Fast by default").
DEFAULT_REGION = "fast"
#: Rootlets lie within about 15 mm of the cord: the default margin around its bounding box.
DEFAULT_ROI_MARGIN_MM = 20.0
