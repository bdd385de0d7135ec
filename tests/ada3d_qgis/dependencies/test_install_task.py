"""The installer task: pip through QProcess in a worker, progress from its
output, cancel, and the dependency folder switched only on success (a fake
interpreter stands in for pip)."""

from __future__ import annotations

import sys
import textwrap
import time

from ada3d_qgis.dependencies import folders
from ada3d_qgis.dependencies.install_task import (
    InstallTask,
    PipProgress,
    pip_arguments,
    run_process,
)
from ada3d_qgis.dependencies.plan import Machine, plan_for


def _fake_python(tmp_path, exit_code=0):
    """An executable that prints pip-like lines and unpacks 'packages' into --target."""
    script = tmp_path / "fakepython"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys, pathlib
        args = sys.argv[1:]
        target = pathlib.Path(args[args.index("--target") + 1])
        reqs = [a for a in args if "==" in a]
        for r in reqs:
            print("Collecting " + r, flush=True)
            print("  Using cached " + r.replace("==", "-") + ".whl", flush=True)
        print("Installing collected packages: " + ", ".join(reqs), flush=True)
        if {exit_code}:
            print("ERROR: Could not install packages due to an OSError", file=sys.stderr)
            sys.exit({exit_code})
        for r in reqs:
            name, version = r.split("==")
            meta = target / (name.replace("-", "_") + "-" + version + ".dist-info")
            meta.mkdir()
            (meta / "METADATA").write_text("Name: " + name + "\\nVersion: " + version + "\\n")
        print("Successfully installed " + " ".join(reqs), flush=True)
        """))
    script.chmod(0o755)
    return script


def test_pip_arguments_pin_everything_and_touch_nothing_else(tmp_path):
    args = pip_arguments(tmp_path, ["onnxruntime==1.32.0"])
    assert args[:3] == ["-m", "pip", "install"]
    assert "--no-deps" in args and args[args.index("--target") + 1] == str(tmp_path)
    assert args[-1] == "onnxruntime==1.32.0"


def test_progress_rises_to_100():
    progress = PipProgress(2)
    seen = [progress.feed(line) for line in (
        "Collecting a==1", "  Downloading a-1.whl (3 MB)", "Collecting b==2",
        "  Using cached b-2.whl", "Installing collected packages: a, b",
        "Successfully installed a-1 b-2")]
    assert seen == sorted(seen) and seen[0] > 0 and seen[-1] == 100.0


def test_run_process_reads_lines_and_exit_code(qgis_app):
    lines = []
    result = run_process(sys.executable, ["-c", "print('one'); print('two'); raise SystemExit(3)"],
                         lines.append, lambda: False)
    assert lines == ["one", "two"] and result.exit_code == 3 and not result.ok


def test_run_process_cancel_kills_it(qgis_app):
    start = time.monotonic()
    result = run_process(sys.executable, ["-c", "import time; print('go', flush=True); "
                                          "time.sleep(60)"], lambda line: None,
                         lambda: time.monotonic() - start > 0.5)
    assert result.cancelled and not result.ok
    assert time.monotonic() - start < 20


def test_install_task_switches_the_folder_only_on_success(qgis_app, tmp_path):
    plan = plan_for(Machine("linux", (3, 11), "x86_64", "580.65.06"))
    root = tmp_path / "deps"
    done = []
    task = InstallTask(plan, root, _fake_python(tmp_path), done.append)
    assert task.run()
    task.finished(True)
    assert done == [task] and task.ok and task.progress() == 100
    active = folders.active_dir(root)
    assert active == task.env and active.parent == root
    assert folders.installed_distributions(active)["onnxruntime-gpu"] == "1.31.1"
    assert "Restart QGIS" in task.message

    # A failing pip leaves the working installation active and its own folder gone.
    (tmp_path / "bad").mkdir()
    failing = InstallTask(plan_for(Machine("linux", (3, 11), cpu_only=True)), root,
                          _fake_python(tmp_path / "bad", exit_code=1))
    assert not failing.run()
    assert folders.active_dir(root) == active and not failing.env.exists()
    assert "exit status 1" in failing.message and "OSError" in failing.message


def test_stale_folders_are_removed_but_not_the_active_one(tmp_path):
    root = tmp_path / "deps"
    old, new = folders.new_env_dir(root), folders.new_env_dir(root)
    folders.activate(root, new)
    assert folders.stale_envs(root) == [old]
    folders.remove_stale(root)
    assert not old.exists() and new.is_dir() and folders.active_dir(root) == new
