"""Defense rules shared by the simulator (flashsale.sim) and the reference service.

Each module holds one pure, deterministic rule: time is passed in as a float
(seconds: simulated time in the engine, a monotonic clock in the service) and
randomness as an injected ``numpy.random.Generator``. Nothing here knows SimPy or
HTTP, so the simulated and the real checkout enforce exactly the same rule.
"""
