"""Where a model comes from: model cards (`registry`), download (`download`), safe unpacking (`archive`), install
and verification (`install`), nnU-Net model folders (`model_folder`), SCT's own copy of the default model
(`sct_copy`), and which model a run uses (`resolve`).

May import `sct_rootlets.io` and the top-level errors/paths; never torch, nnU-Net or an engine, so that
`-list-models`, `-install` and `-h` answer without loading a network library.
"""
