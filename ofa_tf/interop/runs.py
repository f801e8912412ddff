"""An OFA supernet as an ofa_tf run directory, and a run directory as an OFA state dict.

The imported run is an ordinary run directory (`ofa_tf.runs.RunDirectory`): config.json
with the space (OFA's padding, no head bias), kernel_mode=transform, 1000 ImageNet classes,
dataset `tfds:imagenet2012` (what it was trained on) and method `tofa` (recorded only: no
training happened here; it is the method meant to go on from such a supernet, and builds no
frozen teacher), plus one checkpoint at step 0 holding every tensor. `tools.evaluate`, `tools.search`,
`tools.export_tflite` and `tools.build_lut` read it like any trained run, except that the
recorded dataset is never read: tools that need images take `--dataset` (`ofa_tf.runs.tool_dataset`).
"""

from __future__ import annotations

import errno
import os
import shutil

import numpy as np

from ofa_tf.data import MEAN, STD
from ofa_tf.errors import OfaError
from ofa_tf.interop.mapping import export_state_dict, import_state_dict
from ofa_tf.interop.nets import IMAGENET_CLASSES, KERNEL_MODE, OfaNet, net_of_space, ofa_space
from ofa_tf import io
from ofa_tf.io import write_json
from ofa_tf.runs import RunConfig, RunDirectory
from ofa_tf.runs.directory import CHECKPOINT_DIR, CONFIG_FILE
from ofa_tf.runs.plan import build_model
from ofa_tf.runs.checkpoints import write_weights_checkpoint
from ofa_tf.runs.finetuned import is_finetune_config
from ofa_tf.training import OnceForAllModel, build_method

IMPORT_METHOD = "tofa"
IMPORT_DATASET = "tfds:imagenet2012"
IMPORTED_CLASSES = IMAGENET_CLASSES


def imported_config(net: OfaNet) -> RunConfig:
    """The run settings an imported supernet is saved with."""
    space = ofa_space(net)
    return RunConfig(method=IMPORT_METHOD, space=net.space, width_mult=net.width_mult,
                     image_size=tuple(space.resolutions), dataset=IMPORT_DATASET, kernel_mode=KERNEL_MODE)


def build_imported_model(net: OfaNet) -> tuple[OnceForAllModel, dict]:
    """The (built, untrained) model an imported run holds, and its config.json content."""
    config = imported_config(net)
    space = ofa_space(net)
    method = build_method(config.method, space, steps_per_epoch=1, epochs=config.epochs)
    model = build_model(config, space, IMPORTED_CLASSES, method)
    raw = {"run": config.to_dict(), "method": method.to_config(), "space": space.to_config(),
           "class_names": [str(i) for i in range(IMPORTED_CLASSES)], "num_classes": IMPORTED_CLASSES,
           "steps_per_epoch": None, "normalization": {"mean": list(MEAN), "std": list(STD)},
           "imported_from": {"net_id": net.net_id}}
    return model, raw


def check_new_run_dir(model_dir: str) -> None:
    """`model_dir` can hold a new run: absent or an empty directory, and writable."""
    RunDirectory(model_dir).check_writable()
    if io.isdir(model_dir) and io.listdir(model_dir):
        raise OfaError(f"model_dir={model_dir}: not empty (an imported run needs a new directory)")


def import_run(state: dict[str, np.ndarray], net: OfaNet, model_dir: str, source: str) -> str:
    """Writes `state` (OFA's tensors of `net`) as a run directory at `model_dir`.

    Every tensor is mapped and checked before anything is written; the run is written in
    a temporary directory beside `model_dir` and renamed into place (`publish_run`), so an
    error, or another import that took `model_dir` first, leaves nothing behind. Returns
    the checkpoint's base path."""
    check_new_run_dir(model_dir)
    model, raw = build_imported_model(net)
    import_state_dict(model, state, net, source)
    parent = None if io.is_url(model_dir) else os.path.dirname(os.path.abspath(model_dir))
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    tmp = io.make_temp_dir(".tmp-import-", parent)  # a URL: made locally, then copied there
    try:
        base = write_weights_checkpoint(os.path.join(tmp, CHECKPOINT_DIR), model)
        write_json(os.path.join(tmp, CONFIG_FILE), raw)
        if io.is_url(model_dir):
            io.publish_tree(tmp, model_dir)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            publish_run(tmp, model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return os.path.join(model_dir, CHECKPOINT_DIR, os.path.basename(base))


def publish_run(tmp: str, model_dir: str) -> None:
    """Renames the finished run `tmp` to the local `model_dir`, which must be absent or an
    empty directory; one rename does it (POSIX replaces an empty directory atomically and
    refuses a non-empty one), so of two imports into one new directory at the same time
    exactly one wins and the other stops with one line, its own copy removed by the caller."""
    try:
        os.rename(tmp, model_dir)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise
        what = "a file" if os.path.isfile(model_dir) else "not empty"
        raise OfaError(f"model_dir={model_dir}: {what} now (another process wrote it while this import ran; an "
                       "imported run needs a new directory)") from None


def export_run(model_dir: str) -> tuple[dict[str, np.ndarray], OfaNet]:
    """The state dict of a run's supernet (one whose space is an OFA net's) and that net."""
    directory = RunDirectory(model_dir)
    saved = directory.read_trained()
    net = net_of_space(saved.space)
    if saved.config.kernel_mode != KERNEL_MODE:
        raise OfaError(f"model_dir={model_dir}: kernel_mode={saved.config.kernel_mode}; OFA's networks use "
                       f"{KERNEL_MODE} (their kernel-transform matrices)")
    if is_finetune_config(saved.raw):
        raise OfaError(f"model_dir={model_dir}: holds one subnet fine-tuned by ofa-finetune, not a supernet")
    if saved.config.block_class is not None:
        raise OfaError(f"model_dir={model_dir}: block_class={saved.config.block_class}; OFA's networks are built "
                       "from the default block (ElasticInvertedResidual)")
    model, _ = directory.load_supernet()
    return export_state_dict(model, net), net
