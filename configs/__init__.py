"""Shipped YAML: the reference EfficientNet-B0 and the search spaces (data only)."""
