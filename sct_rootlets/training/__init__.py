"""The training loop: manifests and nnU-Net datasets from BIDS labels, training, export, evaluation, and
predictions written back as BIDS derivatives.

Sits beside the batch runner, above `segment`: may import every stage package (io, store, inference, anatomy,
synthetic, qc) but not `sct_rootlets.batch` or the CLI.
"""
