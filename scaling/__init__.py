"""Compound scaling: grow a base spec in depth, width and resolution (cli -> scaling -> nas)."""
