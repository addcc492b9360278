"""A missing test dependency skips on a developer's machine and fails the run under CI=true.

pytest runs in a subprocess on two generated test files: one needs a module that does not exist
(at import time, like the reference tests), one a program that does not exist (inside a test,
like the browser tests) beside a legitimate skip (a kernel this machine cannot run), which stays
a skip either way.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
NEEDS_MODULE = '''
from conftest import require

require("playground_no_such_module", "pip install playground-no-such-module")


def test_uses_the_module():
    pass
'''
NEEDS_PROGRAM = '''
import pytest

from conftest import require_binary


def test_uses_the_program():
    require_binary("playground-no-such-program", "apt-get install playground-no-such-program")


def test_a_kernel_this_machine_cannot_run():
    pytest.skip("the efficient kernel cannot run on this CPU")
'''


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ci-policy")
    (folder / "test_needs_module.py").write_text(NEEDS_MODULE)
    (folder / "test_needs_program.py").write_text(NEEDS_PROGRAM)
    return folder


def run_pytest(path: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(path)],
                          cwd=path if path.is_dir() else path.parent, env=env, capture_output=True, text=True,
                          timeout=300)


def test_missing_dependencies_skip_with_the_install_line(suite):
    run = run_pytest(suite, ci=None)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 skipped" in run.stdout and "failed" not in run.stdout and "error" not in run.stdout
    assert "pip install playground-no-such-module" in run.stdout
    assert "apt-get install playground-no-such-program" in run.stdout


def test_a_missing_module_fails_collection_under_ci(suite):
    run = run_pytest(suite / "test_needs_module.py", ci="true")
    assert run.returncode == 2, run.stdout + run.stderr  # pytest's "interrupted by a collection error"
    summary = run.stdout.strip().splitlines()[-1]
    assert "1 error" in summary and "passed" not in summary and "skipped" not in summary, summary
    assert "pip install playground-no-such-module (CI=true: a missing test dependency fails the run)" in run.stdout


def test_a_missing_program_fails_its_test_under_ci_and_other_skips_stay(suite):
    run = run_pytest(suite / "test_needs_program.py", ci="true")
    assert run.returncode == 1, run.stdout + run.stderr
    summary = run.stdout.strip().splitlines()[-1]
    assert "1 failed" in summary and "1 skipped" in summary and "passed" not in summary, summary
    assert "apt-get install playground-no-such-program (CI=true" in run.stdout
    assert "the efficient kernel cannot run on this CPU" in run.stdout
