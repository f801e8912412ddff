"""ofa-export-ofa: a run's supernet as the PyTorch state dict OFA's own code loads.

  ofa-export-ofa --model_dir=runs/ofa_w10 --output=exports/ofa_w10.pth

The run's space must be an OFA network's (a run made by ofa-import-ofa, or trained with
--space=IMPORTED_RUN/config.json) with kernel_mode=transform. The file is a state dict
that `OFAMobileNetV3(...)` / `OFAProxylessNASNets(...)`'s `load_state_dict(torch.load(FILE),
strict=True)` accepts; BN counters (num_batches_tracked) are written as 0. Needs torch: pip install 'ofa_tf[torch]'.
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.interrupts import raise_if_interrupted  # noqa: E402

PROGRAM = "ofa-export-ofa"


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    add = definer(flag_values)
    add("string", "model_dir", None, "Run directory (imported or trained with an OFA network's space).", "run")
    add("string", "output", None, "Path of the .pth state dict to write.", "output")


def check_flags() -> None:
    """Every flag checked before any work: the output path, the run (trained, its space an
    OFA network's), torch installed."""
    from ofa_tf.interop.nets import net_of_space
    from ofa_tf.interop.torch_files import require_torch
    from ofa_tf.runs import RunDirectory

    flag_checks.required("output", FLAGS.output, "the .pth file to write")
    flag_checks.output_file("output", FLAGS.output)
    net_of_space(RunDirectory(FLAGS.model_dir).read_trained().space)
    require_torch()


def _main(argv: list[str]) -> None:
    from ofa_tf.interop import export_run
    from ofa_tf.interop.torch_files import write_state_dict

    check_flags()
    state, net = export_run(FLAGS.model_dir)
    raise_if_interrupted()  # before the file is written (atomically), not after
    write_state_dict(FLAGS.output, state)
    startup.print_json({"output": FLAGS.output, "net_id": net.net_id, "tensors": len(state)})


def main() -> None:
    """The `ofa-export-ofa` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
