"""Shared fixtures: the shared data folder (tests that need it skip cleanly without it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

settings.register_profile(
    "fluidopt", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("fluidopt")


@pytest.fixture
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when it is absent (e.g. on a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model folder vLLM's CPU build reads (engine tests); skips them with one line without the extra."""
    from fluidopt.engines.vllm_parity import ENABLE, prepare_model_dir, vllm_available

    if not vllm_available():
        pytest.skip(ENABLE)
    return prepare_model_dir(tmp_path_factory.mktemp("tiny-model"))


def pytest_collection_modifyitems(config, items):
    """Without vLLM's CPU build, set the engine tests aside, said in one line (not one skip line each)."""
    engine = [item for item in items if item.get_closest_marker("engine")]
    if not engine:
        return
    from fluidopt.engines.vllm_parity import ENABLE, vllm_available

    if vllm_available():
        return
    config.hook.pytest_deselected(items=engine)
    items[:] = [item for item in items if not item.get_closest_marker("engine")]
    config._fluidopt_engine_note = f"{len(engine)} engine tests not run: {ENABLE}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The one line saying the engine tests did not run and how to run them."""
    note = getattr(config, "_fluidopt_engine_note", None)
    if note:
        terminalreporter.write_line(note)
