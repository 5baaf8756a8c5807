"""The run directory: config.json, metrics.jsonl, checkpoints, preemption."""
