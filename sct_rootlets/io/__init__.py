"""Files in and out: NIfTI loading, validation and reorientation (`image`), BIDS discovery and naming (`bids`),
all-or-nothing writes (`atomic`), output planning and provenance sidecars (`outputs`).

The bottom layer: imports only the standard library, numpy/nibabel and `sct_rootlets.errors`; never torch.
"""
