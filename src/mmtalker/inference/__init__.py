"""Inference: the Python API (``MMTalker``), windowed long audio, retargeting, streaming, evaluation hooks."""
