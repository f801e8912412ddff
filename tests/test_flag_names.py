"""Every program's flags: one name per idea (`ofa_tf.cli.flag_names.IDEAS`), and `--help`
answered at once, before TensorFlow loads.

The programs are the console scripts (pyproject.toml's [project.scripts]). Their own flags are collected as
tests/test_bad_flags.py does: each program's `define_flags` into a fresh `FlagValues`, then
`config_flags.own_flags`.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
import tomllib

import pytest
from absl import flags

from ofa_tf.choices import METHODS
from ofa_tf.cli import config_flags
from ofa_tf.cli.flag_names import IDEAS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELP_SECONDS = 2.0  # generous for a loaded 2-core machine: a quiet one answers in a fraction of a second


def console_scripts() -> dict[str, str]:
    """{program: ofa_tf.cli module} of the console scripts."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    found = {program: target.removesuffix(":main") for program, target in scripts.items()}
    assert len(found) >= 12 and all(module.startswith("ofa_tf.cli.") for module in found.values()), found
    return found


PROGRAMS = console_scripts()


def own_flags(module: str) -> list[flags.Flag]:
    flag_values = flags.FlagValues()
    importlib.import_module(module).define_flags(flag_values)
    return config_flags.own_flags(flag_values)


def kind(flag: flags.Flag) -> str:
    """What the flag's value is, in `Idea.kinds`' words."""
    parser = flag.parser
    if flag.boolean:
        return "bool"
    if isinstance(parser, flags.EnumParser):
        return "enum"
    if isinstance(parser, config_flags.TypedListParser):
        return {"integers": "list of integers", "numbers": "list of numbers"}.get(parser.items, "list")
    if isinstance(parser, flags.ListParser):
        return "list"
    if isinstance(parser, flags.IntegerParser):
        return "integer"
    if isinstance(parser, flags.FloatParser):
        return "float"
    return "string"


@pytest.mark.unit
def test_no_two_programs_name_one_idea_differently():
    """A flag whose name means an idea of the table (its pattern) is one of the idea's
    names, of one of its kinds; so two programs cannot call one idea by two names."""
    problems, used = [], {}
    for program, module in PROGRAMS.items():
        for flag in own_flags(module):
            for idea, rule in IDEAS.items():
                if flag.name in rule.names:
                    used.setdefault(idea, set()).add(program)
                    if kind(flag) not in rule.kinds:
                        problems.append(f"{program} --{flag.name} is a {kind(flag)}, not {' or '.join(rule.kinds)}")
                elif re.search(rule.means, flag.name):
                    problems.append(f"{program} --{flag.name} means the {idea}: name it "
                                    f"{' or '.join('--' + n for n in rule.names)} (ofa_tf/cli/flag_names.py)")
    assert not problems, "\n".join(problems)
    shared = {"input size", "evaluation images", "BN calibration images", "output file", "output folder",
              "run directory", "one subnet", "search space"}
    assert {idea for idea, programs in used.items() if len(programs) > 1} >= shared, used


@pytest.mark.unit
def test_every_program_that_takes_a_space_takes_model_dir():
    """--space names a space; --model_dir reads it from a run (ofa-train writes one there)."""
    for program, module in PROGRAMS.items():
        names = {flag.name for flag in own_flags(module)}
        if "space" in names:
            assert "model_dir" in names, program


@pytest.mark.unit
def test_the_table_s_names_are_the_settings_names():
    """The flags generated from the settings dataclasses keep the table's names, so the
    JSON that records the settings (config.json, export metadata) uses them too; the
    method names RunConfig lists are the presets'."""
    from ofa_tf.export.options import ExportOptions
    from ofa_tf.runs.config import RunConfig
    from ofa_tf.training.methods import PRESETS
    run = {field.name for field in RunConfig.__dataclass_fields__.values()}
    export = {field.name for field in ExportOptions.__dataclass_fields__.values()}
    assert {"image_size", "bn_calibration_images", "space", "width_mult"} <= run
    assert {"eval_images", "bn_calibration_images"} <= export
    assert sorted(PRESETS) == sorted(METHODS)


def _help(module: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    return time.monotonic() - started, done


@pytest.mark.integration
@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_help_answers_at_once_without_tensorflow(program):
    """`--help` parses before TensorFlow loads: exit 0, the program's own flags on stdout,
    under HELP_SECONDS of wall time (the better of two tries: one may meet a busy moment of
    a shared machine); and no TensorFlow or Keras module imported."""
    module = PROGRAMS[program]
    seconds, done = _help(module)
    if seconds >= HELP_SECONDS:
        seconds = min(seconds, _help(module)[0])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(program) and "--helpfull" in done.stdout, done.stdout[:500]
    assert seconds < HELP_SECONDS, f"{program} --help took {seconds:.2f} s"
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules)))\n"
             f"sys.argv = [{program!r}, '--help']\n"
             f"from {module} import main\n"
             "main()\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout.strip().splitlines()[-1]
