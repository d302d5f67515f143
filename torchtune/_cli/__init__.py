"""The ``tune`` command line: ``tune ls | cp | cat | validate | run | download``. See docs/cli.md."""
