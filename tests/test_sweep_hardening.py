"""Sweep cache keyed on the code, corrupt entries recomputed, workers that die with their parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import fluidopt.experiments.tasks as tasks_module
from fluidopt import preset_profile, preset_workload
from fluidopt.experiments.sweep import SerialExecutor, run_sweep
from fluidopt.experiments.tasks import SimulationTask, run_simulation_task
from fluidopt.sim import FCFSPolicy


def _task(seed: int = 1) -> SimulationTask:
    return SimulationTask(preset_workload("toy"), preset_profile("toy"), FCFSPolicy(), seed, (("requests", 40),))


def test_the_cache_key_changes_with_the_code(monkeypatch):
    before = _task().key()
    monkeypatch.setattr(tasks_module, "code_fingerprint", lambda: "changed-code")
    assert _task().key() != before


def test_a_corrupt_cache_entry_is_recomputed_with_a_warning_naming_it(tmp_path):
    first = run_sweep(run_simulation_task, [_task()], executor=SerialExecutor(), cache_dir=tmp_path)
    (entry,) = list(tmp_path.glob("*.json"))
    entry.write_text("{half-written", encoding="utf-8")
    with pytest.warns(UserWarning, match=entry.name):
        again = run_sweep(run_simulation_task, [_task()], executor=SerialExecutor(), cache_dir=tmp_path)
    assert again.computed and again.values[0]["completed_requests"] == first.values[0]["completed_requests"]
    assert json.loads(entry.read_text(encoding="utf-8"))["completed_requests"] == first.values[0]["completed_requests"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_workers_do_not_outlive_a_killed_parent(tmp_path):
    pids = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import os, time
        from fluidopt.experiments.sweep import ProcessExecutor

        def work(i):
            with open({str(pids)!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            time.sleep(60)

        if __name__ == "__main__":
            ProcessExecutor(2).map(work, [1, 2])
        """
    )
    (tmp_path / "parent.py").write_text(script, encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")], cwd=tmp_path)
    deadline = time.time() + 30
    while time.time() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.1)
    workers = [int(p) for p in pids.read_text().split()]
    assert len(workers) == 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    alive = workers
    while time.time() < deadline and alive:
        alive = [p for p in workers if _alive(p)]
        time.sleep(0.1)
    assert not alive, f"workers {alive} outlived their parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stream:
            return stream.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_long_commands_draw_progress_on_a_terminal_only_and_never_with_quiet(monkeypatch, capsys):
    import sys

    from fluidopt.cli import main
    from fluidopt.experiments import sweep

    sweep.show_command_progress(True)
    try:
        assert not sweep.progress_bar([1, 2], enabled=False).disable  # every sweep draws its bar
    finally:
        sweep.show_command_progress(False)
    assert sweep.progress_bar([1, 2], enabled=False).disable
    seen = []
    monkeypatch.setattr(sweep, "show_command_progress", seen.append)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    base = ["stability", "-w", "toy", "-p", "toy"]  # a short command: no --quiet, no bars
    assert main(base) == 0 and seen == []
    recommend = ["recommend", "--engine", "vllm", "-w", "p512d20", "-p", "toy", "--rate", "1"]
    main([*recommend, "--quiet"])
    main(recommend)
    assert seen == [False, True]
    capsys.readouterr()
