"""Training data with exact ground truth: rendered T2w-like volumes from the PAM50 label maps (`render`), and
generated rootlets drawn into real scans (`implant`, with `canal` finding the CSF and `bands` placing each level).

May import `sct_rootlets.io` only: it needs no model and no network library.
"""
