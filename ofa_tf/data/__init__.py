"""Training data: sources (`tfds:`, `folder:`, `tfrecord:`, `idx:`, `npz:`), decoding streamed
images, the tf.data pipeline, augmentation, and TOFA's labelled / unlabelled streams."""

from ofa_tf.data.augment import strong_augment
from ofa_tf.data.decode import BYTES, ENCODINGS, FILE, PIXELS, DecodeFailures, ImageCount, check_some_decode
from ofa_tf.data.pipeline import (AUGMENTATIONS, MEAN, STD, augment, batch_resolution, calibration_images,
                                  check_augment, decoded_pixels, default_augment, evaluation_batches, make_pipeline,
                                  normalize, parse_image_sizes, split_validation, to_rgb_float)
from ofa_tf.data.semi_supervised import REST, labelled_subset, semi_supervised_pipeline, unlabelled_images
from ofa_tf.data.sources import (DATASET_KINDS, DataSource, check_dataset_spec, check_label_offset, from_arrays,
                                 load_dataset, read_idx_file)
from ofa_tf.data.validate import check_class_labels, image_pixels

__all__ = ["AUGMENTATIONS", "BYTES", "DATASET_KINDS", "DataSource", "DecodeFailures", "ENCODINGS", "FILE",
           "ImageCount", "MEAN", "PIXELS", "REST", "STD", "augment", "batch_resolution", "calibration_images",
           "check_augment", "check_class_labels", "check_dataset_spec", "check_label_offset", "check_some_decode",
           "decoded_pixels", "default_augment", "evaluation_batches", "from_arrays", "image_pixels",
           "labelled_subset", "load_dataset", "make_pipeline", "normalize", "parse_image_sizes", "read_idx_file",
           "semi_supervised_pipeline", "split_validation", "strong_augment", "to_rgb_float", "unlabelled_images"]
