"""Console scripts: one module per command, argument parsing only; each `main(argv=None)` calls one library
function. The top layer: may import anything; nothing imports it."""
