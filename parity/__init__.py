"""Parity: cut a team's Claude API bill without cutting quality, and prove it."""

__version__ = "0.1.0"

from parity.wrap import wrap  # noqa: E402
