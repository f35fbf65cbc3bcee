"""How much to trust a prediction: the quality record kept in its sidecar (`record`), the anatomical flags read
from its labels (`flags`), the score that combines them with the network's confidence (`score`), and the choice
of the next images to correct (`select`).

May import `sct_rootlets.anatomy`, `sct_rootlets.inference`, `sct_rootlets.store` and `sct_rootlets.io`; not QC,
batch, review or the CLI.
"""
