"""Image data for the accuracy proxies and for training."""
