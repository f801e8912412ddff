"""Training data: sources (`tfds:`, `folder:`, `idx:`, `npz:`), the tf.data pipeline,
augmentation, and TOFA's labelled / unlabelled streams."""

from ofa_tf.data.augment import strong_augment
from ofa_tf.data.pipeline import (MEAN, STD, augment, batch_resolution, calibration_images, make_pipeline, normalize,
                                  split_validation, to_rgb_float)
from ofa_tf.data.semi_supervised import REST, labelled_subset, semi_supervised_pipeline, unlabelled_images
from ofa_tf.data.sources import (DATASET_KINDS, DataSource, check_dataset_spec, from_arrays, load_dataset,
                                 read_idx_file)

__all__ = ["DATASET_KINDS", "DataSource", "MEAN", "REST", "STD", "augment", "batch_resolution", "calibration_images",
           "check_dataset_spec", "from_arrays", "labelled_subset", "load_dataset", "make_pipeline", "normalize",
           "read_idx_file",
           "semi_supervised_pipeline", "split_validation", "strong_augment", "to_rgb_float", "unlabelled_images"]
