"""Restored runs and what analysis computes from them; never imports the trainer."""
