"""Built-in recipe scripts (run them with `tune run`) and their configs under configs/."""
