"""Shared fixtures; see tests/paths.py for ../shared handling."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.paths import REPO

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
