"""Pretrained weights: a registry of specs and a cache that downloads on demand (never in a constructor)."""
