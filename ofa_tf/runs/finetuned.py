"""A fine-tune directory (what `ofa-finetune` writes) as the tools read it.

OFA ships its searched subnets fine-tuned ("finetune@25", "finetune@75"). `ofa-finetune`
(`ofa_tf.runs.finetune`) trains one subnet of a run as a plain Keras model and writes a run
directory of its own: config.json is the source run's (its space, block, data, classes and
normalisation) plus a `"finetune"` record (the arch, the source run and checkpoint, the
fine-tuning settings); its checkpoints hold the fine-tuned subnet's weights.

`RunDirectory.load_supernet` gives such a directory's model as a `FinetunedSupernet`: a
supernet of the run's space and block whose `get_subnet` of the fine-tuned arch is the
fine-tuned subnet (the checkpoint's weights). So `ofa-export --model_dir=FINETUNE_DIR`
exports it (its arch by default), and `ofa-evaluate --model_dir=FINETUNE_DIR
--archs=FINETUNE_DIR/arch.json` measures it, each with BN recalibrated on the run's images
like any subnet. The directory holds one subnet, not a supernet: asking it for another subnet,
or running it as a supernet, is an error naming the arch it holds.
"""

from __future__ import annotations

import os
from typing import Any

from ofa_tf.errors import OfaError
from ofa_tf.io import local_copy
from ofa_tf.spaces import Arch, SearchSpace
from ofa_tf.training import OnceForAllModel

FINETUNE_KEY = "finetune"  # config.json's record of a fine-tune directory
ARCH_FILE = "arch.json"  # the fine-tuned subnet's arch, beside config.json


def is_finetune_config(raw: dict[str, Any]) -> bool:
    """Whether config.json's content `raw` is a fine-tune directory's."""
    return FINETUNE_KEY in raw


def finetuned_arch(raw: dict[str, Any], space: SearchSpace) -> Arch:
    """The arch a fine-tune directory's config.json records, parsed in its space."""
    record = raw.get(FINETUNE_KEY)
    if not isinstance(record, dict) or "arch" not in record:
        raise OfaError(f"{FINETUNE_KEY}: expected an object with the fine-tuned arch")
    try:
        return space.parse_arch(record["arch"])
    except OfaError as e:
        raise OfaError(f"{FINETUNE_KEY}.arch: {e}") from None


class FinetunedSupernet(OnceForAllModel):
    """The model of a fine-tune directory: `get_subnet(arch)` of its one arch is the
    fine-tuned subnet (the weights of the directory's checkpoint `weights_path`); any other
    use is an OfaError saying what the directory holds. Its own (supernet) weights are never
    loaded: they are not the fine-tuned ones."""

    def __init__(self, *args: Any, finetuned: Arch, weights_path: str, model_dir: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.finetuned, self.weights_path, self.model_dir = finetuned, weights_path, model_dir

    def _holds_one(self, asked: str) -> OfaError:
        return OfaError(f"model_dir={self.model_dir}: holds one subnet fine-tuned by ofa-finetune "
                        f"({os.path.join(self.model_dir, ARCH_FILE)}), not a supernet; {asked}")

    def get_subnet(self, arch: Any, name: str | None = None):
        arch = self.parse_arch(arch)
        if arch.to_json() != self.finetuned.to_json():
            raise self._holds_one(f"arch={arch.to_json()} is another subnet")
        subnet = super().get_subnet(arch, name)
        with local_copy(self.weights_path) as path:
            subnet.load_weights(path)
        return subnet

    def refresh_subnet(self, subnet) -> None:
        raise NotImplementedError("a fine-tuned subnet is extracted afresh")

    def call(self, inputs, *args: Any, **kwargs: Any):
        raise self._holds_one("it runs only as that subnet (get_subnet)")


def finetuned_supernet(model_dir: str, raw: dict[str, Any], model: OnceForAllModel,
                       checkpoint: str) -> FinetunedSupernet:
    """The `FinetunedSupernet` of the fine-tune directory `model_dir` (config.json's content
    `raw`) at its checkpoint `checkpoint` (a base path, `.../ckpt-N`), built like `model`, the
    run's model as `build_model` makes it (its space, block and settings)."""
    finetuned = FinetunedSupernet.from_config({
        **model.get_config(), "finetuned": finetuned_arch(raw, model.space),
        "weights_path": checkpoint + ".weights.h5", "model_dir": model_dir})
    finetuned.build()
    return finetuned


__all__ = ["ARCH_FILE", "FINETUNE_KEY", "FinetunedSupernet", "finetuned_arch", "finetuned_supernet",
           "is_finetune_config"]
