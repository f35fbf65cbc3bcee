"""The training loop: manifests and nnU-Net datasets from BIDS labels, training, export, evaluation."""
