"""ofa-search: searches a trained run for the best subnet under each of several budgets, one JSON per target.

  ofa-search --model_dir=runs/demo --flops=5M,8M,12M --output_dir=runs/demo/search
  ofa-search --model_dir=runs/demo --targets=flops=8M,params=3M --searcher=zero_cost ...
  ofa-search --model_dir=RUN --latency_ms=5,10 --latency_lut=luts/pixel7.json ...

Budgets: --flops (MACs), --params, --latency_ms (needs --latency_lut) take comma-separated
lists; list i of each forms target i (a single value applies to all). --targets adds one
target per use, as NAME=BUDGET pairs. Numbers accept k/M/G suffixes.

Searchers: evolution (OFA's defaults), random, exhaustive (finite spaces such as compofa),
zero_cost (TOFA: the most recently trained subnet within budget, from the run's record).
Fitness: the run's accuracy predictor (ofa-train-predictor) or measured accuracy.
Each result is measured after BN recalibration (--measure) and written to
--output_dir/<target>.json; `ofa-export --arch=FILE` accepts it as it is. Measuring also
measures the run's min subnet on the same images, the baseline every result should beat:
each result records it (`min_subnet_accuracy`, and summary.json's `min_subnet`), and a
result that measures below it is a warning. Every subnet measured (a measured search's
candidates included) goes to --output_dir/measurements.json, which ofa-plot-pareto and
ofa-report draw. The result set (every target's file, summary.json and measurements.json)
is staged and put in place only once complete, so a search stopped before its end
(Ctrl-C, SIGTERM, an error) leaves --output_dir's previous results as they were, never some
targets' new results beside others' old ones (and an --output_dir it had to create is
removed again). --arch_format=ofa writes the arch as OFA's subnet dict {"ks", "e", "d",
"r"} (OFA's PyTorch code reads it; so does every --arch of ofa_tf).

--dataset measures on other data with the supernet's classes (a run imported from OFA's
PyTorch checkpoints has no training data here, so measuring needs one);
--bn_calibration_images=0 keeps the checkpoint's BN statistics.
"""

from __future__ import annotations

import os

# The predictor's matrices are small: a second BLAS thread only waits for a busy core, which
# on a loaded machine makes each prediction many times slower than one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from ofa_tf.cli import startup  # noqa: E402 (first: takes the signals from the program's start)

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Callable, Iterator  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf import io  # noqa: E402
from ofa_tf.interrupts import Interrupted, raise_if_interrupted  # noqa: E402
from ofa_tf.io import TEMP_PREFIX, publish_tree  # noqa: E402
from ofa_tf.report.run_files import MEASUREMENTS_FILE, SUMMARY_FILE  # noqa: E402 (file names only)
from ofa_tf.search import (AccuracyPredictor, CostModels, EvolutionSearch, ExhaustiveSearch, RandomSearch,
                           zero_cost_select)
from ofa_tf.search.costs import format_cost, parse_budget, parse_target, zip_targets
from ofa_tf.search.encoding import space_fingerprint
from ofa_tf.search.predictor import PREDICTOR_DIR
from ofa_tf.search.searchers import SEARCHERS  # (no TensorFlow: ofa_tf/search)

PROGRAM = "ofa-search"
STAGING_PREFIX = TEMP_PREFIX + "search-"  # + HOST-PID-XXXXXXXX (`_result_set`)
FITNESS = ("predictor", "measured")
RUN, BUDGETS, SEARCHER, MEASURING = "run", "budgets", "searcher", "measuring"


def _budget(name: str):
    """A list item check: `text` is a budget (`parse_budget`); the flag keeps the text."""
    def check(text: str) -> str:
        parse_budget(name, text)
        return text
    return check


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    add = definer(flag_values)
    add("string", "model_dir", None, "Run directory written by ofa-train.", RUN)
    add("string", "output_dir", None, "Directory for the per-target JSON files and summary.json.", RUN)
    add("enum", "arch_format", "ofa_tf", "How results write the arch: ofa_tf (an Arch's fields) or ofa (OFA's "
        "subnet dict {ks, e, d, r}).", RUN, enum_values=["ofa_tf", "ofa"])
    budgets = "budgets like 150M"
    add("list", "flops", [], "MACs budgets, e.g. 50M,100M,150M (one target each).", BUDGETS,
        item_type=_budget("flops"), items=budgets)
    add("list", "params", [], "Parameter budgets, e.g. 2.5M,3M.", BUDGETS, item_type=_budget("params"), items=budgets)
    add("list", "latency_ms", [], "Latency budgets in ms (needs --latency_lut).", BUDGETS,
        item_type=_budget("latency_ms"), items="budgets like 20")
    add("multi_string", "targets", [], "A target as NAME=BUDGET pairs, e.g. flops=150M,latency_ms=20 "
        "(repeat for more targets).", BUDGETS)
    add("string", "latency_lut", None, "Latency look-up table (ofa-build-lut writes one).", BUDGETS, path="input")
    add("string", "searcher", "evolution", "evolution, random, exhaustive (finite spaces) or zero_cost "
        "(TOFA: the most recently trained subnet within budget).", SEARCHER)
    add("string", "fitness", "predictor", "predictor (the run's accuracy predictor) or measured.", SEARCHER)
    add("string", "predictor_dir", None, f"Accuracy predictor directory (default: MODEL_DIR/{PREDICTOR_DIR}).",
        SEARCHER, path="input")
    add("integer", "seed", 0, "Seed of the searcher (results are deterministic for a seed).", SEARCHER)
    add("integer", "population", 100, "Evolution: population size.", SEARCHER)
    add("integer", "generations", 500, "Evolution: generations.", SEARCHER)
    add("float", "parent_ratio", 0.25, "Evolution: share of the population kept as parents.", SEARCHER)
    add("float", "mutation_ratio", 0.5, "Evolution: share of children made by mutation (the rest: crossover).",
        SEARCHER)
    add("float", "mutation_prob", 0.1, "Evolution: per-choice mutation probability.", SEARCHER)
    add("integer", "num_samples", None, "Random search: archs evaluated (default: as many as evolution).",
        SEARCHER)
    add("list", "image_size", None, "Search at these input sizes only, some of the run's (default: every size "
        "of the run).", SEARCHER, item_type=int)
    add("bool", "measure", True, "Measure each result's accuracy (BN-recalibrated) on held-out data.", MEASURING)
    add("integer", "eval_images", 1000, "Held-out images for measured accuracy.", MEASURING)
    add("integer", "bn_calibration_images", 2000, "Training images for each subnet's BN recalibration; 0 keeps "
        "the checkpoint's BN statistics.", MEASURING)
    add("string", "dataset", None, "Data for measured accuracy instead of the run's own, with the supernet's "
        "classes: npz:FILE, folder:DIR, tfrecord:GLOB, idx:DIR or tfds:NAME, as ofa-train's --dataset (needed "
        "to measure a run imported from OFA, which has no training data here).", MEASURING)
    add("string", "split", "validation", "validation (the run's held-out training data) or test.", MEASURING)


def searcher_from_flags(space):
    """The searcher the flags describe, for `space` (None for zero_cost, which needs none).

    Raises:
      OfaError: unknown searcher, bad numbers, an input size the run does not have.
    """
    f = FLAGS
    flag_checks.choice("searcher", f.searcher, SEARCHERS)
    if f.image_size:
        space = flag_checks.sizes_of(space, "image_size", f.image_size)
    if f.searcher == "zero_cost":
        return None
    if f.searcher == "exhaustive":
        space.enumerate().__next__()  # raises OfaError for a space too large to list
        return ExhaustiveSearch(space)
    if f.searcher == "random":
        samples = f.num_samples if f.num_samples is not None else f.population * (f.generations + 1)
        return RandomSearch(space, num_samples=samples, seed=f.seed)
    return EvolutionSearch(space, population_size=f.population, generations=f.generations,
                           parent_ratio=f.parent_ratio, mutation_ratio=f.mutation_ratio,
                           mutation_prob=f.mutation_prob, seed=f.seed, progress=True)


def _check_evolution_flags() -> None:
    """The evolution settings, checked whichever searcher runs (random takes its default
    sample count from --population and --generations)."""
    f = FLAGS
    try:
        EvolutionSearch.check_settings(f.population, f.generations, f.parent_ratio, f.mutation_ratio,
                                       f.mutation_prob)
    except OfaError as e:  # the searcher calls --population population_size
        message = str(e)
        raise OfaError(message.replace("population_size=", "population=", 1)
                       if message.startswith("population_size=") else message) from None


def _targets() -> list[dict[str, str]]:
    if FLAGS.latency_ms and not FLAGS.latency_lut:
        raise OfaError(f"--latency_ms={','.join(FLAGS.latency_ms)}: needs --latency_lut (a latency look-up table)")
    targets = zip_targets({"flops": FLAGS.flops, "params": FLAGS.params, "latency_ms": FLAGS.latency_ms})
    targets += [parse_target(t) for t in FLAGS.targets]
    if not targets:
        raise OfaError("no budget given: pass --flops, --params, --latency_ms or --targets")
    return targets


def _file_name(target: dict[str, str]) -> str:
    text = "_".join(f"{k}-{v}" for k, v in target.items())
    return re.sub(r"[^A-Za-z0-9._-]", "", text) + ".json"


def _latency_table(space):
    from ofa_tf.latency.lut import LatencyTable

    if not FLAGS.latency_lut:
        return None
    table = LatencyTable.load(FLAGS.latency_lut)
    theirs = getattr(table, "space", None)
    if theirs is not None and (space_fingerprint(theirs.with_resolutions(space.resolutions))
                               != space_fingerprint(space)):
        raise OfaError(f"--latency_lut={FLAGS.latency_lut}: table is for another space ({table.space_name!r}) "
                       f"than the run's {space.name!r}")
    return table


def check_flags():
    """Every flag checked before any work (the supernet and its data load only after):
    choices, counts and ranges, the output directory, the input files, the budgets (each
    against the run's smallest subnet), the searcher for the run's space. Returns (saved
    run, searcher, cost models, targets, constraints)."""
    from ofa_tf.data.sources import check_dataset_spec
    from ofa_tf.runs import RunDirectory
    from ofa_tf.runs.tool_dataset import check_dataset, require_dataset
    from ofa_tf.search.measure import SubnetMeter

    f = FLAGS
    flag_checks.choice("fitness", f.fitness, FITNESS)
    flag_checks.choice("searcher", f.searcher, SEARCHERS)
    flag_checks.required("output_dir", f.output_dir, "where the per-target JSON files go")
    flag_checks.output_dir("output_dir", f.output_dir)
    flag_checks.input_path("latency_lut", f.latency_lut)
    flag_checks.input_path("predictor_dir", f.predictor_dir, "directory")
    flag_checks.seed("seed", f.seed)
    flag_checks.positive("num_samples", f.num_samples)
    flag_checks.only_with(f, ["num_samples"], f.searcher == "random", "--searcher=random")
    _check_evolution_flags()
    SubnetMeter.check_settings(f.eval_images, f.bn_calibration_images, f.split)
    measures = f.measure or f.fitness == "measured"
    flag_checks.only_with(f, ["dataset"], measures, "measured accuracy (--measure or --fitness=measured)")
    if f.dataset is not None:
        check_dataset_spec(f.dataset, "dataset")
    targets = _targets()
    saved = RunDirectory(f.model_dir).read_trained()
    space = saved.space
    searcher = searcher_from_flags(space)
    costs = CostModels(space, saved.num_classes, _latency_table(space))
    constraints = [costs.constraints(t) for t in targets]  # every budget checked before any work
    if measures:
        require_dataset(saved, f.dataset, f.model_dir, "measured accuracy (--measure, --fitness=measured)")
        check_dataset(f.dataset, saved)  # loads it: its class count, before the model
    return saved, searcher, costs, targets, constraints


def _main(argv: list[str]) -> None:
    from ofa_tf.search.measure import SubnetMeter
    from ofa_tf.training.record import load_sampled_record

    saved, searcher, costs, targets, constraints = check_flags()
    space = saved.space

    predictor_dir = FLAGS.predictor_dir or os.path.join(FLAGS.model_dir, PREDICTOR_DIR)
    needs_predictor = FLAGS.fitness == "predictor" and searcher is not None
    predictor = None
    if needs_predictor or FLAGS.predictor_dir or io.isfile(os.path.join(predictor_dir, "predictor.npz")):
        predictor = AccuracyPredictor.load(predictor_dir, space)
    meter = None
    if FLAGS.measure or FLAGS.fitness == "measured":
        meter = SubnetMeter(FLAGS.model_dir, FLAGS.eval_images, FLAGS.bn_calibration_images, FLAGS.split,
                            dataset=FLAGS.dataset)
    record = None
    if searcher is None:
        record = load_sampled_record(FLAGS.model_dir)
    fitness = None
    if searcher is not None:
        fitness = predictor.predict if FLAGS.fitness == "predictor" else functools.partial(meter.accuracy,
                                                                                          progress=True)
    baseline = _min_subnet(meter, costs)

    summary = []
    try:
        with _result_set(FLAGS.output_dir) as stage:
            for target, target_constraints in zip(targets, constraints):
                started = time.time()
                if searcher is None:
                    result = zero_cost_select(record, target_constraints, space)
                else:
                    result = searcher.search(fitness, target_constraints)
                seconds = time.time() - started
                arch = result.arch
                out = {"target": target, "budgets": {c.name: c.budget for c in target_constraints},
                       "arch": space.to_ofa_arch(arch) if FLAGS.arch_format == "ofa" else arch.to_dict(),
                       "space": space.name, "model_dir": FLAGS.model_dir,
                       "searcher": result.searcher, "fitness": None if searcher is None else FLAGS.fitness,
                       "seed": FLAGS.seed, "evaluations": result.evaluations, "search_seconds": round(seconds, 3),
                       "predicted_accuracy": float(predictor.predict([arch])[0]) if predictor else None,
                       "measured_accuracy": meter.measure([arch])[0]["accuracy"] if meter else None,
                       "measured_on": meter.settings if meter else None,
                       "min_subnet_accuracy": baseline["measured_accuracy"] if baseline else None,
                       **costs.costs(arch), **result.extra}
                name = _file_name(target)
                _write_json(stage(name), os.path.join(FLAGS.output_dir, name), out)
                summary.append({"file": os.path.join(FLAGS.output_dir, name),
                                **{k: out[k] for k in ("target", "predicted_accuracy", "measured_accuracy",
                                                       "min_subnet_accuracy", "macs", "params", "latency_ms",
                                                       "evaluations")}})
                against = f" (min subnet {baseline['measured_accuracy']:.4f} on the same images)" if baseline else ""
                print(f"{name}: macs {format_cost('macs', out['macs'])}, params "
                      f"{format_cost('params', out['params'])}, predicted {out['predicted_accuracy']}, measured "
                      f"{out['measured_accuracy']}{against} ({seconds:.1f} s)", flush=True)
                if baseline and out["measured_accuracy"] < baseline["measured_accuracy"]:
                    print(f"warning: {name}: measures {out['measured_accuracy']:.2%}, below the min subnet "
                          f"({format_cost('macs', baseline['macs'])}) at {baseline['measured_accuracy']:.2%} on the "
                          "same images: the search did worse than the smallest subnet; search with measured accuracy "
                          "(--fitness=measured) or a better predictor", file=sys.stderr, flush=True)
            if meter is not None:
                _write_json(stage(MEASUREMENTS_FILE), os.path.join(FLAGS.output_dir, MEASUREMENTS_FILE),
                            {"model_dir": FLAGS.model_dir, "settings": {**meter.settings, "space": space.name},
                             "results": meter.measured()})
            _write_json(stage(SUMMARY_FILE), os.path.join(FLAGS.output_dir, SUMMARY_FILE),
                        {"model_dir": FLAGS.model_dir, "searcher": FLAGS.searcher, "settings": _settings(),
                         "min_subnet": baseline, "results": summary})
    except Interrupted as stop:
        raise Interrupted(stop.signum, f"interrupted after {len(summary)} of {len(targets)} targets; "
                                       f"--output_dir={FLAGS.output_dir} is unchanged") from None
    print(json.dumps(summary))


def _min_subnet(meter, costs) -> dict | None:
    """The run's smallest subnet (`CostModels.smallest`: min choices at the smallest input
    size) measured on the meter's images, as {"arch", "macs", "params", "latency_ms",
    "measured_accuracy"}: the baseline a searched subnet should beat. None when nothing is
    measured."""
    if meter is None:
        return None
    smallest = costs.smallest()
    return {"arch": smallest.to_dict(), **costs.costs(smallest),
            "measured_accuracy": meter.measure([smallest])[0]["accuracy"]}


@contextlib.contextmanager
def _result_set(output_dir: str) -> Iterator[Callable[[str], str]]:
    """Yields `stage(name)`: where to write the result file `name`. The files are staged in a
    temporary folder (in `output_dir` itself when it is local, so that putting each in place
    is an atomic rename; under $TMPDIR for a URL) and put in place, summary.json last, only
    when the block ends without an exception or a pending signal; the folder is removed
    however it ends.

    A local `output_dir` that does not exist yet is created to hold the staging folder; when
    nothing is put in place it is removed again, with the parents this search created, so a
    stopped search leaves no empty folder behind (a URL's folder is made only to publish).
    The staging folder is named `.tmp-search-HOST-PID-XXXXXXXX`: a search killed outright
    (SIGKILL, a power cut) cannot remove its own, so each search first removes those of
    processes that no longer run on this host (`_remove_abandoned_staging`)."""
    local = not io.is_url(output_dir)
    created = io.topmost_missing_folder(output_dir) if local else None
    names: dict[str, None] = {}  # in order, once each (two equal targets write one file)
    staging = None
    published = False
    try:
        if local:
            io.makedirs(output_dir)
            _remove_abandoned_staging(output_dir)
        try:
            staging = io.make_temp_dir(prefix=f"{STAGING_PREFIX}{_host()}-{os.getpid()}-",
                                       dir=output_dir if local else None)
        except OSError as e:  # out of room: the folder the user named, not the staging one
            if io.space_problem(e) is None:
                raise
            raise OSError(e.errno, e.strerror, output_dir) from None

        def stage(name: str) -> str:
            names[name] = None
            return os.path.join(staging, name)

        yield stage
        raise_if_interrupted()  # a signal during the last writes: nothing is put in place
        if not local:
            io.makedirs(output_dir)
        for name in sorted(names, key=lambda n: n == SUMMARY_FILE):  # no check from here: all or none
            publish_tree(os.path.join(staging, name), os.path.join(output_dir, name))
        published = True
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not published and created is not None:
            io.remove_empty_folders(output_dir, created)


def _host() -> str:
    """This host's name as it goes in a staging folder's name (no separators)."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _remove_abandoned_staging(output_dir: str) -> list[str]:
    """Removes the staging folders in the local `output_dir` of searches that no longer run:
    named for this host and a pid with no process (`os.kill(pid, 0)`); returns their names.
    A folder of another host (a shared disk) or of a running process is left alone; a pid
    reused by an unrelated process only keeps a folder until that process ends."""
    pattern = re.compile(rf"{re.escape(STAGING_PREFIX)}{re.escape(_host())}-(\d+)-[0-9a-f]+")
    removed = []
    for name in sorted(io.listdir(output_dir)):
        found = pattern.fullmatch(name)
        if found is None or int(found.group(1)) <= 0:  # (pid 0 would signal our process group)
            continue
        try:
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:  # no such process: its search was killed
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
            removed.append(name)
        except (PermissionError, OverflowError):  # another user's process, or not a pid at all
            pass
    return removed


def _settings() -> dict:
    names = ["fitness", "seed", "population", "generations", "parent_ratio", "mutation_ratio", "mutation_prob",
             "num_samples", "image_size", "eval_images", "bn_calibration_images", "split", "dataset"]
    return {n: getattr(FLAGS, n) for n in names}


def _write_json(staged: str, final: str, data) -> None:
    """Writes `data` as JSON to the staged file `staged` (`_result_set`). Running out of room
    names `final`, the result file the user asked for, not the staging folder they never see."""
    text = json.dumps(data, indent=1, default=lambda o: dataclasses.asdict(o))
    try:
        io.write_bytes(staged, text.encode())
    except OSError as e:
        if io.space_problem(e) is None:
            raise
        raise OSError(e.errno, e.strerror, final) from None


def main() -> None:
    """The `ofa-search` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
