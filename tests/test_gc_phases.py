"""The garbage-collector pause used while numba and the CLI start up (fluidopt._gc)."""

import gc
import importlib

import pytest

from fluidopt._gc import collection_paused


@pytest.fixture(autouse=True)
def _collector_enabled():
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if not was_enabled:
        gc.disable()


def test_pause_restores_an_enabled_collector_even_after_an_error():
    with pytest.raises(RuntimeError), collection_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_nested_pauses_leave_the_outer_one_in_force():
    with collection_paused():
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_pause_never_enables_a_collector_the_caller_disabled():
    gc.disable()
    with collection_paused():
        pass
    assert not gc.isenabled()


def test_lazy_package_exports_leave_the_collector_as_they_found_it():
    package = importlib.import_module("fluidopt.thresholds")
    package.__dict__.pop("nested_wait_thresholds", None)
    assert callable(package.nested_wait_thresholds)
    assert gc.isenabled()


def test_cli_main_leaves_the_collector_enabled(capsys):
    from fluidopt.cli import main

    assert main(["equilibrium", "-w", "toy", "-p", "toy", "--json"]) == 0
    assert gc.isenabled()
