"""`parity emulate`: serve the local Claude API emulator."""
