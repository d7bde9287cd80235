"""Training engine: the loop (trainer), checkpoints, multi-process DDP helpers and data-set inference."""
