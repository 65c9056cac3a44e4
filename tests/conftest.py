import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DPREG_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data. Missing data is a failure (never a silent skip): CI must have it."""
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"../shared/data not found at {SHARED_DATA}: these tests need the project's shared data "
            "(set DPREG_SHARED_DATA to its location)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root():
    return REPO
