"""Running a Hypothesis property at the quick budget, and at the thorough one under `slow`.

The profiles are registered in the root `conftest.py`. A property test takes the
`budget` parameter from `BUDGETS` and hands its `@given` function to `check`:

    @BUDGETS
    def test_something_holds(budget: str) -> None:
        @given(st.text())
        def holds(text: str) -> None: ...

        check(budget, holds)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import settings

QUICK = "vigil"
THOROUGH = "vigil-thorough"

BUDGETS = pytest.mark.parametrize(
    "budget", [QUICK, pytest.param(THOROUGH, marks=pytest.mark.slow)], ids=["quick", "thorough"]
)


def check(budget: str, prop: Callable[[], None]) -> None:
    """Run the `@given` function `prop` with the examples of profile `budget`."""
    settings(settings.get_profile(budget))(prop)()
