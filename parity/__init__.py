"""Parity: cut a team's Claude API bill without cutting quality, and prove it."""

__version__ = "0.1.0"
