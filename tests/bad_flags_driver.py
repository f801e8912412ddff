"""Runs every bad-flag case of one command in this process (TensorFlow imported once).

  python tests/bad_flags_driver.py TOOL CASES_JSON RESULTS_JSON

CASES_JSON: {"cwd": DIR, "watch": [PATH, ...], "cases": [{"id": ..., "args": [--flag=value, ...]}, ...]}.
Each case runs the command's real entry point (`ofa_tf.cli.TOOL.main()`: absl parsing,
`startup.run`'s error handling) with `sys.argv` set to its args, flags reset to their
defaults between cases (`FLAGS.unparse_flags()`), file descriptors 1 and 2 captured. Calls
that start work (loading a dataset or a model, timing a TFLite file, building a table,
plotting, profiling) are replaced by sentinels that stop the case and record their name,
so a flag that is checked too late (or not at all) shows as work done, and no case
actually does the work. RESULTS_JSON gets, per case: exit status, stdout, stderr, the
files that changed under the watched paths, and the heavy call reached (or None).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Where work starts: (module, attribute path). Reaching one means the command started
# loading or computing before it had checked every flag.
HEAVY_CALLS = (
    ("ofa_tf.data.sources", "load_dataset"),
    ("ofa_tf.runs.plan", "build_model"),
    ("ofa_tf.runs.directory", "RunDirectory.load_supernet"),
    ("ofa_tf.runs.directory", "RunDirectory.evaluation_data"),
    ("ofa_tf.search.measure", "SubnetMeter.__init__"),
    ("ofa_tf.evaluation.subnet_accuracy", "evaluate_archs"),
    ("ofa_tf.export.interpreter", "make_interpreter"),
    ("ofa_tf.latency.host", "benchmark_host"),
    ("ofa_tf.latency.ops", "build_table"),
    ("ofa_tf.latency.android", "AndroidBenchmark.check_device"),
    ("ofa_tf.spaces.costs", "profile"),
    ("ofa_tf.search.pareto", "summarize"),
    ("ofa_tf.report.plots", "pareto_png"),
    ("ofa_tf.report.page", "build_report"),
    ("ofa_tf.search", "fit_predictor"),
    ("ofa_tf.interop.torch_files", "read_state_dict"),
    ("ofa_tf.interop.runs", "export_run"),
)


class HeavyWork(BaseException):
    """Raised by a sentinel: not an Exception, so no handler of the command catches it."""


def install_sentinels(reached: list[str]) -> None:
    for module_name, attribute in HEAVY_CALLS:
        module = importlib.import_module(module_name)
        owner, name = module, attribute
        if "." in attribute:
            class_name, name = attribute.split(".")
            owner = getattr(module, class_name)
        original = getattr(owner, name)
        label = f"{module_name}.{attribute}"

        def sentinel(*args, _label=label, **kwargs):
            reached.append(_label)
            raise HeavyWork(_label)

        setattr(owner, name, sentinel)
        if owner is module:  # also where other modules imported it by name
            for other in list(sys.modules.values()):
                if getattr(other, "__name__", "").startswith("ofa_tf"):
                    for key, value in list(vars(other).items()):
                        if value is original:
                            setattr(other, key, sentinel)


def snapshot(paths: list[str]) -> dict[str, tuple]:
    """Every file and folder under `paths`, with size and modification time."""
    seen = {}
    for top in paths:
        if not os.path.exists(top):
            continue
        stat = os.stat(top)
        seen[top] = (stat.st_size, stat.st_mtime_ns)
        if os.path.isdir(top):
            for folder, dirs, files in os.walk(top):
                for name in dirs + files:
                    path = os.path.join(folder, name)
                    stat = os.lstat(path)
                    seen[path] = (stat.st_size, stat.st_mtime_ns)
    return seen


def run_captured(main) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `main()`, file descriptors 1 and 2 captured."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except HeavyWork:
            code = -1
        except BaseException:  # noqa: BLE001 (a traceback is what the test looks for)
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        return code, out.read().decode(errors="replace"), err.read().decode(errors="replace")


def main() -> None:
    tool, cases_path, results_path = sys.argv[1:4]
    with open(cases_path) as f:
        spec = json.load(f)
    module = importlib.import_module(f"ofa_tf.cli.{tool}")  # no TensorFlow: a command loads it after its flags
    from absl import flags  # noqa: PLC0415 (after the command module, which takes the signals first)
    from ofa_tf.cli import startup  # noqa: PLC0415

    startup.load_tensorflow()  # once, silenced, as a command does: the sentinels' modules import it

    module.define_flags()
    module.define_flags = lambda *args, **kwargs: None  # main() defines them: once is all absl allows
    reached: list[str] = []
    install_sentinels(reached)
    os.chdir(spec["cwd"])
    results = []
    for case in spec["cases"]:
        before = snapshot(spec["watch"])
        flags.FLAGS.unparse_flags()
        sys.argv = [module.PROGRAM, *case["args"]]
        reached.clear()
        code, out, err = run_captured(module.main)
        after = snapshot(spec["watch"])
        changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
        results.append({"id": case["id"], "exit": code, "stdout": out, "stderr": err, "written": changed,
                        "heavy": reached[0] if reached else None})
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
