"""The repository's maintenance scripts (run as ``python tools/<name>.py``); the tests import them as ``tools.<name>``."""
