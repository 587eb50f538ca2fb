"""A faithful local Claude API: same wire format, errors, streaming, batches and prompt-caching arithmetic."""
