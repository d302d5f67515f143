# Label value ignored by ``torch.nn.CrossEntropyLoss`` (its default ``ignore_index``): positions of
# prompts, padding and document boundaries carry it so they add nothing to the loss.
CROSS_ENTROPY_IGNORE_IDX = -100
