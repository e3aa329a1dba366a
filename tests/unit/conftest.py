"""Fixtures for the unit tests."""

from tests.unit.fakecg import fake_kernel

__all__ = ["fake_kernel"]
