"""`parity demo`: the whole product on the built-in emulator."""
