"""Brains decide what the emulated models answer; the emulator owns the wire, the brain owns the words."""
