"""Helpers shared by tests: seam doubles and the bad-input sweep runner."""
