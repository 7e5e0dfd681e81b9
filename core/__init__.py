"""The shared vocabulary every other package imports; it imports none of them.

``request`` (``GenRequest``, ``Decision``), ``usage`` (``TokenUsage``, ``UsageLedger``),
``result`` (``PolicyResult``), ``backend`` (the ``Backend`` protocol policies call and the pool
implements), ``metering`` (what one request spent upstream) and ``errors`` (the one exception
tree). No I/O, no FastAPI, no Redis, no HTTP client.
"""
