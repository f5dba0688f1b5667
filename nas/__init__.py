"""The architecture language, model builder, FLOP counters and the architecture search."""
