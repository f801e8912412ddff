"""Issue 27's odd datasets as the bad-input table (`bad_inputs.py`): each row is a real
`ofa-train` (or `ofa-check-data`) on a dataset that used to train silently wrong or end in
a TensorFlow traceback, and must now be one error line naming it, with nothing written."""

import gzip
import os

import numpy as np
import pytest

from bad_inputs import BadInput, check_bad_input, with_tiny_space

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------ inputs
def _npz(x, y=None):
    def prepare(tmp):
        labels = np.arange(len(x)) % 4 if y is None else y
        np.savez(os.path.join(tmp, "bad.npz"), x_train=x, y_train=labels)
    return prepare


def _undecodable_folder(tmp):
    for c in ("cat", "dog"):
        os.makedirs(os.path.join(tmp, "images", c))
        for i in range(8):
            with open(os.path.join(tmp, "images", c, f"{i}.jpg"), "wb") as f:
                f.write(b"\xff\xd8\xff\xe0 not a JPEG")


def _one_folder(tmp):
    import tensorflow as tf
    os.makedirs(os.path.join(tmp, "images", "cat"))
    for i in range(4):
        tf.io.write_file(os.path.join(tmp, "images", "cat", f"{i}.png"),
                         tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)))


def _records(path, count=6, float_from=None):
    import tensorflow as tf
    image = tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy()
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(count):
            label = (tf.train.Feature(float_list=tf.train.FloatList(value=[1.0])) if float_from is not None and
                     i >= float_from else tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 3])))
            feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                       "image/class/label": label}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def _damaged_tfrecords(tmp):
    _records(os.path.join(tmp, "t-0"))
    _records(os.path.join(tmp, "t-1"))
    with open(os.path.join(tmp, "t-1"), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(tmp, "t-1")) - 30)  # its last record cut short


def _float_label_tfrecords(first_float):
    return lambda tmp: _records(os.path.join(tmp, "t-0"), float_from=first_float)


def _idx_0x0(tmp):
    for name, dims in (("train-images-idx3-ubyte.gz", (4, 0, 0)), ("train-labels-idx1-ubyte.gz", (4,))):
        data = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
        data += bytes([0, 1, 2, 3]) if len(dims) == 1 else b""
        with gzip.open(os.path.join(tmp, name), "wb") as f:
            f.write(data)


RNG = np.random.default_rng(0)
STRAY = np.arange(40) % 10
STRAY[17] = 5_000_000
TRAIN = ("--model_dir={tmp}/run2",)
WATCH = ("{tmp}/run2",)
# the cheapest real training run (the tiny space at 16 px, one step, ~10 s): one row runs it afterwards
THEN = ("train", "--model_dir={tmp}/out", "--dataset=npz:{demo}", "--space={tmp}/tiny.json", "--image_size=16",
        "--epochs=1", "--steps_per_epoch=1", "--batch_size=8", "--bn_calibration_images=8", "--num_subnets=1",
        "--method=full")

CASES = [
    BadInput("npz_uint16", "train", (*TRAIN, "--dataset=npz:{tmp}/bad.npz"),
             "bad.npz: x_train has dtype uint16 with values in [",
             prepare=with_tiny_space(_npz(RNG.integers(0, 65536, (40, 8, 8)).astype(np.uint16))), watch=WATCH,
             then=THEN),
    BadInput("npz_int8_signed", "train", (*TRAIN, "--dataset=npz:{tmp}/bad.npz"),
             "bad.npz: x_train has dtype int8 with values in [-",
             prepare=_npz(RNG.integers(-128, 128, (40, 8, 8)).astype(np.int8)), watch=WATCH),
    BadInput("npz_float_out_of_range", "train", (*TRAIN, "--dataset=npz:{tmp}/bad.npz"),
             "bad.npz: x_train has dtype float32 with values in [-",
             prepare=_npz(RNG.uniform(-1, 1, (40, 8, 8)).astype(np.float32)), watch=WATCH),
    BadInput("npz_complex", "train", (*TRAIN, "--dataset=npz:{tmp}/bad.npz"),
             "bad.npz: x_train has dtype complex64 (complex numbers); expected uint8 pixels",
             prepare=_npz(np.ones((40, 8, 8), np.complex64)), watch=WATCH),
    BadInput("npz_one_class", "train", (*TRAIN, "--dataset=npz:{tmp}/bad.npz"),
             "bad.npz: the training labels hold one class only (label 0); expected at least 2 classes",
             prepare=_npz(np.zeros((40, 8, 8), np.uint8), np.zeros(40, np.int64)), watch=WATCH),
    BadInput("npz_stray_huge_label", "train", (*TRAIN, "--dataset=npz:{tmp}/bad.npz"),
             "bad.npz: label 5000000 would make a 5000001-class classifier, but only 11 distinct labels occur",
             prepare=_npz(np.zeros((40, 8, 8), np.uint8), STRAY), watch=WATCH),
    BadInput("npz_0x0_images", "train", (*TRAIN, "--dataset=npz:{tmp}/bad.npz"),
             "bad.npz: x_train holds images of 0x0 pixels; expected at least 1x1",
             prepare=_npz(np.zeros((40, 0, 0), np.uint8)), watch=WATCH),
    BadInput("idx_0x0_images", "train", (*TRAIN, "--dataset=idx:{tmp}"),
             "x_train holds images of 0x0 pixels; expected at least 1x1", prepare=_idx_0x0, watch=WATCH),
    BadInput("folder_none_decodes", "train", (*TRAIN, "--dataset=folder:{tmp}/images"),
             "images: none of its 16 images decodes (all tried; the first, ",
             prepare=_undecodable_folder, watch=WATCH),
    BadInput("folder_one_class", "train", (*TRAIN, "--dataset=folder:{tmp}/images"),
             "images: one class folder only ('cat'); expected at least 2 classes", prepare=_one_folder, watch=WATCH),
    BadInput("tfrecord_damaged", "train", (*TRAIN, "--dataset=tfrecord:{tmp}/t-*"),
             "/t-1 is damaged after 5 good records (truncated record at ", prepare=_damaged_tfrecords, watch=WATCH),
    BadInput("tfrecord_float_label", "train", (*TRAIN, "--dataset=tfrecord:{tmp}/t-*"),
             "/t-0 hold image/class/label as a float_list; expected an integer",
             prepare=_float_label_tfrecords(0), watch=WATCH),
    BadInput("tfrecord_later_float_label", "train", (*TRAIN, "--dataset=tfrecord:{tmp}/t-*"),
             "record 3 of ", prepare=_float_label_tfrecords(3), watch=WATCH),
    BadInput("check_data_damaged_tfrecord", "check_data", ("--dataset=tfrecord:{tmp}/t-*",
                                                           "--output={tmp}/check.json"),
             "/t-1 is damaged after 5 good records (truncated record at ", prepare=_damaged_tfrecords,
             watch=("{tmp}/check.json",)),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_an_odd_dataset_is_one_error_line_and_writes_nothing(tmp_path, case):
    problems = check_bad_input(case, str(tmp_path))
    assert not problems, "\n".join(problems)
