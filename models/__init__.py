"""Model cards: one JSON file per model, installed inside the package as `sct_rootlets.model_cards`."""
