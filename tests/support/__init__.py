"""Shared code for the tests: helpers, and what stands behind the fixtures in tests/conftest.py."""
