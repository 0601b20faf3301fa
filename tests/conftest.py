"""Fixtures and hooks: the real media folder, seeding, the `media` mark; on CI (CI=true, which .ci/run exports) a
missing media folder and a skipped browser test are failures, so that neither kind of test can silently stop running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from helpers import MEDIA_DIR  # noqa: E402


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """The real media folder; a test that needs it is skipped where it is missing (a user's machine), and fails on
    CI (CI=true), where the media tests must run."""
    if not MEDIA_DIR.is_dir():
        message = f"real test media not found at {MEDIA_DIR} (set EMI_HF_MEDIA_DIR to the shared/media folder)"
        if on_ci():
            pytest.fail(f"{message}; on CI (CI=true) the media tests must run", pytrace=False)
        pytest.skip(message)
    return MEDIA_DIR


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    """Tests that read ../shared/media are marked `media` (`pytest -m "not media"` runs without it)."""
    for item in items:
        if "media_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.media)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On CI (CI=true, as .ci/run runs) a skipped browser test is a failure: .ci/run installs Chromium for them."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and on_ci() and item.get_closest_marker("browser"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"browser test skipped on CI (where it must run): {reason}"
