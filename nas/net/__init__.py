"""The network language: YAML specs, the block layout, the model builder, FLOP counting, rounding."""
