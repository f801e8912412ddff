"""ofa-import-ofa: an OFA PyTorch supernet checkpoint as an ofa_tf run directory, or a
specialised OFA subnet as a plain Keras model.

  ofa-import-ofa --checkpoint=ofa_mbv3_d234_e346_k357_w1.0 \\
      --net_id=ofa_mbv3_d234_e346_k357_w1.0 --model_dir=runs/ofa_w10
  ofa-import-ofa --specialized=note10_lat@22ms_top1@76.6_finetune@25 \\
      --net_id=ofa_mbv3_d234_e346_k357_w1.0 --output=exports/note10_22ms.keras

--checkpoint is the file OFA publishes for --net_id (a state dict, or a dict holding one
under "state_dict"), read without running code in it. Every tensor is mapped, BN statistics
and kernel-transform matrices included; a tensor missing or left over is an error naming it,
and nothing is written. The run (kernel_mode=transform, 1000 classes) is read by
ofa-evaluate, ofa-search, ofa-export, ofa-build-lut and ofa-train --init_checkpoint.
--specialized reads a folder of OFA's specialised nets (net.config, init, optionally
run.config for the input size) of the space of --net_id and writes it as a .keras model.
Needs torch: pip install 'ofa_tf[torch]'.
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.interop.nets import DEFAULT_RESOLUTION, NETS, get_net  # noqa: E402 (no TensorFlow here)
from ofa_tf.io import atomic_write  # noqa: E402

PROGRAM = "ofa-import-ofa"


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    add = definer(flag_values)
    add("string", "checkpoint", None, "PyTorch checkpoint of an OFA supernet (.pth or OFA's file).", "input",
        path="input")
    add("string", "net_id", None, f"Which OFA supernet the checkpoint holds: one of {sorted(NETS)}.", "input")
    add("string", "model_dir", None, "Run directory to write (new or empty).", "output")
    add("string", "specialized", None, "Instead of --checkpoint: a folder of a specialised OFA net (net.config, "
        "init, optionally run.config) of --net_id's space.", "specialised net", path="input")
    add("string", "output", None, "With --specialized: the .keras file to write.", "specialised net")
    add("integer", "image_size", None, f"With --specialized: its input size (default: run.config's, else "
        f"{DEFAULT_RESOLUTION}).", "specialised net")


def check_flags() -> None:
    """Every flag checked before any work: the input (checkpoint file or specialised folder)
    exists, the net is known, the output (a new or empty run directory, or a .keras file) is
    writable, torch is installed."""
    from ofa_tf.interop.runs import check_new_run_dir
    from ofa_tf.interop.torch_files import require_torch

    flag_checks.input_path("specialized", FLAGS.specialized, "directory")
    flag_checks.output_file("output", FLAGS.output)
    if FLAGS.output and not FLAGS.output.endswith(".keras"):
        raise OfaError(f"--output={FLAGS.output}: expected a .keras file")
    if FLAGS.image_size is not None:
        flag_checks.positive("image_size", FLAGS.image_size)
    specialized = FLAGS.specialized is not None
    flag_checks.only_with(FLAGS, ["checkpoint", "model_dir"], not specialized, "a supernet (not --specialized)")
    flag_checks.only_with(FLAGS, ["output", "image_size"], specialized, "--specialized")
    if specialized:
        flag_checks.required("output", FLAGS.output, "the .keras file to write")
    else:
        flag_checks.required("checkpoint", FLAGS.checkpoint, "the PyTorch checkpoint file (or --specialized)")
        flag_checks.input_path("checkpoint", FLAGS.checkpoint)
    flag_checks.required("net_id", FLAGS.net_id, f"one of {sorted(NETS)}")
    get_net(FLAGS.net_id)
    if not specialized:
        flag_checks.required("model_dir", FLAGS.model_dir, "the run directory to write")
        check_new_run_dir(FLAGS.model_dir)
    require_torch()


def _import_specialized() -> None:
    from ofa_tf.interop.specialized import WEIGHTS, import_specialized, read_specialized_config
    from ofa_tf.interop.torch_files import read_state_dict

    net = get_net(FLAGS.net_id)
    config, size = read_specialized_config(FLAGS.specialized)
    resolution = FLAGS.image_size or size or DEFAULT_RESOLUTION
    path = f"{FLAGS.specialized.rstrip('/')}/{WEIGHTS}"
    state = read_state_dict(path, flag="specialized")
    model = import_specialized(net, config, state, resolution, source=f"specialized={path}")
    atomic_write(FLAGS.output, model.save)
    startup.print_json({"output": FLAGS.output, "net_id": net.net_id, "image_size": resolution,
                        "tensors": len(state), "params": model.count_params()})


def _main(argv: list[str]) -> None:
    from ofa_tf.interop import import_run
    from ofa_tf.interop.torch_files import read_state_dict

    check_flags()
    if FLAGS.specialized is not None:
        _import_specialized()
        return
    net = get_net(FLAGS.net_id)
    state = read_state_dict(FLAGS.checkpoint)
    checkpoint = import_run(state, net, FLAGS.model_dir, source=f"checkpoint={FLAGS.checkpoint}")
    startup.print_json({"model_dir": FLAGS.model_dir, "net_id": net.net_id, "tensors": len(state),
                        "checkpoint": checkpoint})


def main() -> None:
    """The `ofa-import-ofa` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
