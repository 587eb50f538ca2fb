"""The Claude API's wire format, shared by everything that speaks it (the gateway, the emulator, the SDK wrapper).

`errors` (the error envelope and `APIError`), `ids` (request, message and batch ids), `body` (reading and
decoding a request body within a size limit), `headers` (the credential a request presents), `handlers` (the
404/405/500 answers in the envelope, for any Starlette app) and `transport` (in-process httpx2 transports that
stream like a socket). Nothing here knows who answers: the real API, the gateway or the emulator.
"""
