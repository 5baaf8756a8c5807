"""Datasets: TFDS preparation and reading (dataset.py), the grain stream (input_pipeline.py)."""
