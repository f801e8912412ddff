"""Training data: sources (`tfds:`, `folder:`, `tfrecord:`, `idx:`, `npz:`), decoding streamed
images, the tf.data pipeline, augmentation, and TOFA's labelled / unlabelled streams."""

from ofa_tf.data.augment import strong_augment
from ofa_tf.data.pipeline import (MEAN, STD, augment, calibration_images, evaluation_batches, make_pipeline, normalize,
                                  split_validation)
from ofa_tf.data.semi_supervised import (TrainingSplits, labelled_subset, semi_supervised_pipeline, training_splits,
                                        unlabelled_images)
from ofa_tf.data.sources import DataSource, from_arrays, load_dataset

__all__ = ["DataSource", "MEAN", "STD", "TrainingSplits", "augment", "calibration_images", "evaluation_batches",
           "from_arrays", "labelled_subset", "load_dataset", "make_pipeline", "normalize", "semi_supervised_pipeline",
           "split_validation", "strong_augment", "training_splits", "unlabelled_images"]
