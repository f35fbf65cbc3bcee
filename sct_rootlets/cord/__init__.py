"""Spinal cord segmentation with the bundled cord model: the cord mask that spinal levels, the fast rootlets
path and far-from-cord cleaning need, for users who have none from SCT."""
