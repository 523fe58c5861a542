"""The reliability scenarios: short by default (CI), long with REEV_RELIABILITY_LONG=1
(`make reliability`)."""

import os

import pytest

LONG = os.environ.get("REEV_RELIABILITY_LONG") == "1"


def scale(short, long):
    """The size of a scenario: `short` in CI, `long` under `make reliability`."""
    return long if LONG else short


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/reliability" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)
