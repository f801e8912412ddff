"""Test set-up, and the rule that every test is marked `unit` or `integration`.

Run only the unit tests (in-process and fast, a few minutes on 2 cores):
    .venv/bin/python -m pytest -q -m unit tests
only the integration tests (subprocesses, training, TFLite conversion, tf.distribute, slow):
    .venv/bin/python -m pytest -q -n 2 -m integration tests
or everything, as README says:
    .venv/bin/python -m pytest -q -n 2 tests

A test is `integration` when it runs a subprocess (a tool), trains, converts to TFLite,
uses tf.distribute or takes more than ~5 s; otherwise it is `unit`. Mark a whole file with
`pytestmark = pytest.mark.unit` (or `.integration`), or each test of a mixed file with a
decorator. Collection fails for a test that has neither marker (the markers are
registered in pytest.ini; --strict-markers rejects a misspelt one).
"""

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ofa_tf.graph_optimization import configure_graph_optimization  # noqa: E402

configure_graph_optimization()  # as every command starts TensorFlow (OFA_TF_GRAPH_OPTIMIZATION)

KINDS = ("unit", "integration")


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """Turns a module's (or class's) collection into a collection error when one of its
    tests has neither marker, or both; works the same under pytest-xdist."""
    report = yield
    if report.passed:
        problems = []
        for item in (node for node in report.result if isinstance(node, pytest.Item)):
            kinds = [kind for kind in KINDS if item.get_closest_marker(kind)]
            if not kinds:
                problems.append(f"{item.nodeid}: no marker; mark it unit or integration (see tests/conftest.py)")
            elif len(kinds) > 1:
                problems.append(f"{item.nodeid}: marked both unit and integration")
        if problems:
            report.outcome = "failed"
            report.longrepr = "\n".join(problems)
            report.result = []
    return report


@pytest.fixture(autouse=True)
def _process_wide_settings_are_restored(request):
    """Every test leaves Keras's global dtype policy and TensorFlow's Grappler setting as it
    found them: a leaked mixed_float16 policy would silently wrap every later `compile` in a
    loss-scaling optimizer that skips overflowing steps (no test should see another's state)."""
    import keras
    import tensorflow as tf
    policy, grappler = keras.config.dtype_policy().name, tf.config.optimizer.get_experimental_options()
    yield
    leaked = []
    if keras.config.dtype_policy().name != policy:
        leaked.append(f"Keras dtype policy {keras.config.dtype_policy().name!r} (was {policy!r})")
        keras.config.set_dtype_policy(policy)
    if tf.config.optimizer.get_experimental_options() != grappler:
        leaked.append(f"Grappler options {tf.config.optimizer.get_experimental_options()} (were {grappler})")
        tf.config.optimizer.set_experimental_options(grappler)
    if leaked:
        pytest.fail(f"{request.node.nodeid} left process-wide settings changed: {'; '.join(leaked)}")


def pytest_terminal_summary(terminalreporter):
    """Prints what tests report with `record_property("summary", LINE)` (the bad-flag table's
    size and pass count), at the end of the run, also under pytest-xdist (properties travel
    with the test reports)."""
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", ()):
                if name == "summary" and getattr(report, "when", "call") == "call":
                    terminalreporter.write_line(f"{report.nodeid.split('::')[-1]}: {value}")
