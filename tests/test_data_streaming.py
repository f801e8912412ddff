"""Streaming sources (folder:, tfrecord:, mixed-size tfds:), ImageNet augmentation, elastic
image sizes and skipped undecodable files, on small images generated here."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from helpers import SIZES, assert_one_line_error, make_folder, random_image, run_tool, tiny_space

from ofa_tf.cli import config_flags
from ofa_tf.data import load_dataset, make_pipeline
from ofa_tf.data.decode import BYTES, FILE, DecodeFailures, ImageCount
from ofa_tf.data.pipeline import default_augment, parse_image_sizes
from ofa_tf.data.sources import check_dataset_spec
from ofa_tf.data import decode
from ofa_tf.data.check import find_undecodable
from ofa_tf.errors import OfaError
from ofa_tf.runs import RunConfig, RunDirectory, RunPlan



def make_tfrecords(path, count=10, label_base=1, seed=0, features=("image/encoded", "image/class/label"),
                   corrupt_at=None):
    """A TFRecord file in the standard ImageNet conversion's layout (labels from `label_base`)."""
    rng = np.random.default_rng(seed)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            height, width = SIZES[i % len(SIZES)]
            encoded = b"not an image" if i == corrupt_at else tf.io.encode_jpeg(random_image(rng, height, width)).numpy()
            feature = {}
            if "image/encoded" in features:
                feature["image/encoded"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))
            if "image/class/label" in features:
                feature["image/class/label"] = tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[label_base + i % 3]))
            feature["image/format"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"JPEG"]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(path)


def _batches(dataset, n):
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(n)]


# ------------------------------------------------------------------------------ unit
@pytest.mark.unit
def test_a_folder_is_listed_not_decoded_and_a_corrupt_file_is_no_startup_error(tmp_path):
    make_folder(tmp_path, corrupt=("dog", "broken.jpg"))
    data = load_dataset(f"folder:{tmp_path}")
    assert data.encoding == FILE and data.class_names == ["cat", "dog"] and data.num_train == 13
    paths = [p.decode() for p, _ in data.train.as_numpy_iterator()]
    assert os.path.join(str(tmp_path), "dog", "broken.jpg") in paths
    assert sorted(int(y) for _, y in data.train.as_numpy_iterator()) == [0] * 6 + [1] * 7


@pytest.mark.unit
def test_mixed_sizes_batch_at_one_size_per_batch_and_resume_exactly(tmp_path):
    make_folder(tmp_path)
    data = load_dataset(f"folder:{tmp_path}")
    options = dict(training=True, seed=3, repeat=True, augmentation="imagenet", encoding=data.encoding)
    stream = _batches(make_pipeline(data.train, 4, [16, 24], **options), 6)
    assert {x.shape[1] for x, _ in stream} == {16, 24}
    assert all(x.shape == (4, x.shape[1], x.shape[1], 3) and y.dtype == np.int32 for x, y in stream)
    again = _batches(make_pipeline(data.train, 4, [16, 24], **options), 6)
    resumed = _batches(make_pipeline(data.train, 4, [16, 24], start_batch=4, **options), 2)
    for (x, y), (x2, y2) in zip(stream, again):
        np.testing.assert_array_equal(x, x2)
    for (x, y), (x2, y2) in zip(stream[4:], resumed):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    for augmentation in ("cifar", "none"):  # every augmentation batches mixed sizes
        x, _ = _batches(make_pipeline(data.train, 4, [16], training=True, augmentation=augmentation,
                                      encoding=FILE), 1)[0]
        assert x.shape == (4, 16, 16, 3)


@pytest.mark.unit
def test_a_worker_reads_and_decodes_only_its_rows_of_each_batch(tmp_path):
    """Two workers' shares (`rows=`) of a mixed-size folder are exactly the whole batches'
    rows, and each worker decodes only its half of an epoch's files (counted through the
    decode failures of a folder whose every file is broken)."""
    make_folder(tmp_path / "good", per_class=8)
    data = load_dataset(f"folder:{tmp_path / 'good'}")
    options = dict(training=True, seed=2, repeat=True, augmentation="imagenet", encoding=FILE, start_batch=1)
    whole = _batches(make_pipeline(data.train, 8, [16, 24], **options), 3)
    halves = [_batches(make_pipeline(data.train, 8, [16, 24], rows=rows, **options), 3) for rows in ((0, 4), (4, 8))]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *halves):
        assert x0.shape[0] == x1.shape[0] == 4
        np.testing.assert_array_equal(np.concatenate([x0, x1]), x)
        np.testing.assert_array_equal(np.concatenate([y0, y1]), y)
    pixels = tf.data.Dataset.from_tensor_slices((np.arange(16 * 8 * 8 * 3, dtype=np.uint8).reshape(16, 8, 8, 3),
                                                 np.arange(16)))
    whole = _batches(make_pipeline(pixels, 8, [8], training=True, repeat=True, augmentation="cifar"), 2)
    share = _batches(make_pipeline(pixels, 8, [8], training=True, repeat=True, augmentation="cifar", rows=(2, 6)), 2)
    for (x, y), (xs, ys) in zip(whole, share):
        np.testing.assert_array_equal(xs, x[2:6])
        np.testing.assert_array_equal(ys, y[2:6])

    broken = tmp_path / "broken"
    for c in ("a", "b"):
        (broken / c).mkdir(parents=True)
        for i in range(8):
            (broken / c / f"{i}.jpg").write_bytes(b"not an image")
    data = load_dataset(f"folder:{broken}", check_decoding=False)  # (loading refuses a folder none of which decodes)
    seen = []
    for rows in ((0, 4), (4, 8)):
        failures, read = DecodeFailures(), ImageCount()
        shares = _batches(make_pipeline(data.train, 8, [16], training=True, augmentation="imagenet",
                                        encoding=FILE, failures=failures, rows=rows, images_read=read), 10)
        assert [x.shape[0] for x, _ in shares] == [4, 4]  # one epoch: 16 files in 2 batches
        assert failures.count == 8 and read.value == 8, (failures.names, read.value)
        seen.append(set(failures.names))
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 16
    odd = _batches(make_pipeline(pixels.take(13), 8, [8], training=True, rows=(4, 8)), 10)
    assert [x.shape[0] for x, _ in odd] == [4]  # the last, partial batch is dropped for every worker
    with pytest.raises(OfaError, match="rows="):  # unknown length, not repeated: it could split unevenly
        make_pipeline(pixels.filter(lambda x, y: y >= 0), 8, [8], training=True, rows=(0, 4))


@pytest.mark.unit
def test_a_corrupt_file_is_skipped_counted_once_and_batches_stay_full(tmp_path):
    make_folder(tmp_path, per_class=3, corrupt=("cat", "bad.png"))
    data = load_dataset(f"folder:{tmp_path}")
    failures = DecodeFailures()
    train = make_pipeline(data.train, 7, [16], training=True, repeat=True, encoding=FILE, failures=failures,
                          augmentation="imagenet")
    batches = _batches(train, 3)  # 7 images a pass: the bad file is met in every pass
    assert all(x.shape == (7, 16, 16, 3) and np.isfinite(x).all() for x, _ in batches)
    assert failures.count == 1 and failures.names == [os.path.join(str(tmp_path), "cat", "bad.png")]
    assert not any((x == x.min()).all(axis=(1, 2, 3)).any() for x, _ in batches)  # no zero placeholder left
    evaluation = make_pipeline(data.train, 4, [16], training=False, encoding=FILE, augmentation="imagenet")
    assert sum(len(y) for _, y in _batches(evaluation, 10)) == 6  # evaluation leaves it out


@pytest.mark.unit
def test_tfrecords_in_the_imagenet_layout_with_a_label_offset(tmp_path):
    make_tfrecords(tmp_path / "train-00000-of-00002", count=7, label_base=1, seed=1)
    make_tfrecords(tmp_path / "train-00001-of-00002", count=5, label_base=1, seed=2, corrupt_at=2)
    spec = f"tfrecord:{tmp_path}/train-*"
    data = load_dataset(spec, label_offset=1)
    assert data.encoding == BYTES and data.num_train == 12 and data.class_names == ["0", "1", "2"]
    labels = sorted(int(y) for _, y in data.train.as_numpy_iterator())
    assert labels[0] == 0 and labels[-1] == 2
    failures = DecodeFailures()
    x, y = _batches(make_pipeline(data.train, 12, [16], training=True, encoding=BYTES, failures=failures,
                                  augmentation="imagenet"), 1)[0]
    assert x.shape == (12, 16, 16, 3) and failures.count == 1 and "bytes" in failures.names[0]
    with pytest.raises(OfaError, match=r"label 1 minus label_offset=2 is negative"):
        load_dataset(spec, label_offset=2)


@pytest.mark.unit
def test_bad_tfrecord_specs_are_named(tmp_path):
    with pytest.raises(OfaError, match=rf"dataset=tfrecord:{tmp_path}/none-\*: no files match"):
        check_dataset_spec(f"tfrecord:{tmp_path}/none-*")
    make_tfrecords(tmp_path / "nolabel", count=2, features=("image/encoded",))
    with pytest.raises(OfaError, match=r"lack image/class/label"):
        check_dataset_spec(f"tfrecord:{tmp_path}/nolabel")
    (tmp_path / "text").write_text("hello, not a record file")
    with pytest.raises(OfaError, match=r"is not a TFRecord file"):
        check_dataset_spec(f"tfrecord:{tmp_path}/text")
    with pytest.raises(OfaError, match=r"label_offset=1: only used with a tfrecord: dataset"):
        RunPlan.resolve(RunConfig(label_offset=1))
    with pytest.raises(OfaError, match=r"augment=foo: expected one of \['imagenet', 'cifar', 'none', 'imagenet_autoaugment'\]"):
        RunPlan.resolve(RunConfig(augment="foo"))


@pytest.mark.unit
def test_find_undecodable_names_bad_files_and_records(tmp_path):
    make_folder(tmp_path / "f", per_class=2, corrupt=("cat", "bad.jpg"))
    result = find_undecodable(load_dataset(f"folder:{tmp_path / 'f'}"))
    assert result["images"] == 5 and result["bad"] == [str(tmp_path / "f" / "cat" / "bad.jpg")]
    make_tfrecords(tmp_path / "t-0", count=6, corrupt_at=4)
    result = find_undecodable(load_dataset(f"tfrecord:{tmp_path}/t-*", label_offset=1))
    assert result == {"dataset": f"tfrecord:{tmp_path}/t-*", "images": 6, "undecodable": 1,
                      "bad": [f"{tmp_path}/t-0#4"]}


@pytest.mark.unit
def test_imagenet_evaluation_is_a_centre_crop_of_size_over_0_875(tmp_path):
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 40:] = 255  # left half black, right half white
    size = 16  # shorter side 40 -> ceil(16 / 0.875) = 19; the crop keeps 40 * 16 / 19 = 34 px around the centre
    offset, extent = decode._centre_window(tf.constant([40, 80, 3]), tf.constant(size))
    assert offset.numpy().tolist() == [3, 23] and extent.numpy().tolist() == [34, 34]
    png = tf.io.encode_png(image)
    from_pixels = decode.centre_crop(tf.constant(image), False, tf.constant(size)).numpy()
    from_png = decode.centre_crop(png, True, tf.constant(size)).numpy()
    np.testing.assert_array_equal(from_pixels, from_png)
    jpeg = tf.io.encode_jpeg(image, quality=100)
    cropped_jpeg = decode.centre_crop(jpeg, True, tf.constant(size)).numpy()  # decode_and_crop_jpeg
    full = tf.io.decode_jpeg(jpeg).numpy()[3:37, 23:57]
    assert np.abs(cropped_jpeg.astype(int) - full.astype(int)).max() <= 2


@pytest.mark.unit
def test_random_resized_crop_covers_8_to_100_percent_at_aspect_3_4_to_4_3():
    shape = tf.constant([300, 400, 3])
    areas, aspects = [], []
    for i in range(200):
        _, extent = decode._random_window(shape, tf.constant([7, i], tf.int64))
        height, width = extent.numpy()
        areas.append(height * width / (300 * 400))
        aspects.append(width / height)
    assert min(areas) >= 0.08 - 0.01 and max(areas) <= 1.0 and max(areas) - min(areas) > 0.5
    full = [a for a in areas if a < 1.0]  # the whole image is the fallback after 10 failed draws
    assert full and all(3 / 4 - 0.05 <= r <= 4 / 3 + 0.05 for a, r in zip(areas, aspects) if a < 1.0)
    again = decode._random_window(shape, tf.constant([7, 5], tf.int64))[1].numpy()
    assert again.tolist() == list(decode._random_window(shape, tf.constant([7, 5], tf.int64))[1].numpy())


@pytest.mark.unit
def test_image_sizes_take_lists_and_ranges():
    assert parse_image_sizes("128:224:32") == [128, 160, 192, 224]
    assert len(parse_image_sizes("128:224:4")) == 25 and parse_image_sizes("64") == [64]
    for bad in ("224:128:4", "128:224:0", "128:224", "a"):
        with pytest.raises(OfaError, match=f"image_size={bad}: expected"):
            parse_image_sizes(bad)
    from absl import flags
    flag_values = flags.FlagValues()
    config_flags.define_config_flags(RunConfig, flag_values)
    flag_values(["prog", "--image_size=96,128:224:32"])
    config = config_flags.config_from_flags(RunConfig, flag_values)
    assert config.image_size == (96, 128, 160, 192, 224)
    assert config.augmentation == "imagenet" and RunConfig().augmentation == "cifar"
    assert default_augment((32,)) == "cifar" and default_augment((64, 96)) == "imagenet"
    with pytest.raises(flags.IllegalFlagValueError, match="224:128:4"):
        flag_values(["prog", "--image_size=224:128:4"])


@pytest.mark.unit
def test_in_memory_sources_keep_their_pipeline(tmp_path):
    """npz-style pixel images with cifar augmentation: augmented at their size, then each batch
    resized, as before; the same images through imagenet augmentation crop per image."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 12, 12, 1)).astype(np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(8) % 2))
    x, _ = _batches(make_pipeline(dataset, 4, [16], training=True, seed=1), 1)[0]
    explicit, _ = _batches(make_pipeline(dataset, 4, [16], training=True, seed=1, augmentation="cifar",
                                         encoding="pixels"), 1)[0]
    np.testing.assert_array_equal(x, explicit)
    assert x.shape == (4, 16, 16, 3)
    x, _ = _batches(make_pipeline(dataset, 4, [16], training=True, seed=1, augmentation="imagenet"), 1)[0]
    assert x.shape == (4, 16, 16, 3)


# ------------------------------------------------------------------------ integration
@pytest.mark.integration
def test_a_tfds_dataset_of_mixed_sizes_built_offline(tmp_path):
    import tensorflow_datasets as tfds

    class MixedSizeShapes(tfds.core.GeneratorBasedBuilder):
        """Tiny offline builder: images of different sizes, three classes."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(names=["a", "b", "c"])}), supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(9, 0), "test": self._generate_examples(3, 1)}

        def _generate_examples(self, count, seed):
            rng = np.random.default_rng(seed)
            for i in range(count):
                height, width = SIZES[i % len(SIZES)]
                yield i, {"image": random_image(rng, height, width), "label": i % 3}

    builder = MixedSizeShapes(data_dir=str(tmp_path))
    builder.download_and_prepare()
    data = load_dataset("tfds:mixed_size_shapes", data_dir=str(tmp_path))
    assert data.encoding == BYTES and data.class_names == ["a", "b", "c"] and data.num_train == 9
    x, y = _batches(make_pipeline(data.train, 3, [16, 24], training=True, repeat=True, augmentation="imagenet",
                                  encoding=data.encoding), 1)[0]
    assert x.shape[0] == 3 and x.shape[1] in (16, 24)
    evaluation = list(make_pipeline(data.test, 2, [16, 24], training=False, encoding=data.encoding))
    assert [x.shape for x, _ in evaluation] == [(2, 24, 24, 3), (1, 24, 24, 3)]


@pytest.mark.integration
def test_training_on_a_folder_with_a_corrupt_file_finishes_and_reports_it(tmp_path):
    from ofa_tf.runs import train

    folder = make_folder(tmp_path / "images", per_class=8, corrupt=("dog", "broken.jpg"))
    space = tmp_path / "tiny_space.json"
    space.write_text(json.dumps(tiny_space(resolutions=(16, 24)).to_config()))
    config = RunConfig(method="full", space=str(space), image_size=(16, 24), dataset=f"folder:{folder}",
                       augment="imagenet", epochs=1, batch_size=4, validation_fraction=0.2,
                       bn_calibration_images=8, seed=0)
    summary = train(config, str(tmp_path / "run"), verbose=0)
    assert summary["epochs"] == 1
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert rows[0]["skipped_images"] == "1" and np.isfinite(float(rows[0]["loss"]))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["run"]
    assert saved["augment"] == "imagenet" and saved["dataset"] == f"folder:{folder}"
    directory = RunDirectory(str(tmp_path / "run"))  # what evaluate, search and export measure on
    data = directory.evaluation_data(directory.read(), 24, bn_calibration_images=8)
    assert data.evaluation and all(x.shape[1:] == (24, 24, 3) for x, _ in data.evaluation)
    assert data.calibration[0].shape[1:] == (24, 24, 3)


@pytest.mark.integration
def test_training_on_tfrecords_with_a_label_offset(tmp_path):
    from ofa_tf.runs import train

    make_tfrecords(tmp_path / "train-00000-of-00001", count=16, label_base=1)
    space = tmp_path / "tiny_space.json"
    space.write_text(json.dumps(tiny_space(resolutions=(16,)).to_config()))
    config = RunConfig(method="full", space=str(space), image_size=(16,), dataset=f"tfrecord:{tmp_path}/train-*",
                       label_offset=1, epochs=1, steps_per_epoch=2, batch_size=4, bn_calibration_images=8)
    assert config.augmentation == "cifar"  # 16 px: the small-image default
    summary = train(config, str(tmp_path / "run"), verbose=0)
    assert summary["epochs"] == 1
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["num_classes"] == 3 and saved["run"]["label_offset"] == 1
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert rows[0]["skipped_images"] == "0"


@pytest.mark.integration
def test_check_data_lists_the_files_that_do_not_decode(tmp_path):
    make_folder(tmp_path / "images", per_class=3, corrupt=("dog", "broken.jpg"))
    done = run_tool("check_data", f"--dataset=folder:{tmp_path / 'images'}", f"--output={tmp_path / 'check.json'}")
    assert done.returncode == 1, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"dataset": f"folder:{tmp_path / 'images'}", "images": 7, "undecodable": 1,
                      "bad": [str(tmp_path / "images" / "dog" / "broken.jpg")]}
    assert json.loads((tmp_path / "check.json").read_text()) == result
    bad = run_tool("check_data", f"--dataset=tfrecord:{tmp_path}/none-*")
    assert_one_line_error(bad, f"--dataset=tfrecord:{tmp_path}/none-*: no files match")
