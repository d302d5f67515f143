"""Model families. Each ``models/<family>/`` exposes component builders, model builders and tokenizers."""
