"""Training utilities: checkpointers, precision, LR schedules, metric logging, memory, activations."""
