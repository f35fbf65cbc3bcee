"""Spinal nerve rootlets segmentation and spinal levels on MRI, compatible with the Spinal Cord Toolbox."""

__version__ = "0.1.0"
