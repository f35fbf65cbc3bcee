"""Where a model runs: the nnU-Net predictor session, loaded once and used for many images (`session`), the
engines that run its network (`engines`: PyTorch, OpenVINO), and checkpoint reading that runs no code
(`checkpoint`).

May import `sct_rootlets.io` and `sct_rootlets.store`; imports torch and nnU-Net only inside functions.
"""
