"""Settings every suite shares: Hypothesis's profiles for the property tests.

`vigil` is the default: a small fixed budget (50 examples, derandomized so CI runs the same
examples every time, no example database written to disk) that keeps `make test` fast.
`vigil-thorough` runs the same properties with 2,000 examples; the property tests run it
under the `slow` marker (`tests.support.properties.BUDGETS`), so `make test-slow` and
`make test-all` run the long budget. Each example has a deadline: a property that can
take unbounded time (a backtracking regex) fails instead of passing slowly.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings

settings.register_profile(
    "vigil",
    max_examples=50,
    deadline=timedelta(seconds=2),
    derandomize=True,
    database=None,
    # Generating examples can be slow on a loaded CI machine; the deadline still holds.
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("vigil-thorough", settings.get_profile("vigil"), max_examples=2000)
settings.load_profile("vigil")
