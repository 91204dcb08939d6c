"""The end-to-end tests use the session's Chromium (``browser``) and ``screenshots`` fixtures of
tests/web/conftest.py: one playwright per test process (a second sync playwright in the same
process refuses to start)."""
