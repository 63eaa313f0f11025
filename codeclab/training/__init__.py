"""Reproducible training of the built-in learned codec's weights."""
