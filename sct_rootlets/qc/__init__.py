"""Checking results: QC entries that SCT's viewer opens (`entries`), the pictures in them (`pictures`), one call
per command (`report`), our own viewer (`viewer/`), and the field's accuracy metrics (`metrics`).

May import `sct_rootlets.anatomy` (level names, the centerline) and `sct_rootlets.io`; never a network library.
"""
