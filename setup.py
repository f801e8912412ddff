"""ofa_tf: once-for-all supernet training (DεpS, OFA, CompOFA, BigNAS, fOFA, TOFA) for Keras 3."""

from setuptools import find_packages, setup

# Versions verified to install and work together on Python 3.11 (see BUILD.md).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tf-keras==2.21.0",  # tensorflow-model-optimization's QAT runs on tf_keras only
    "tensorflow-datasets==4.9.10",
    "importlib_resources==7.1.0",  # needed by tensorflow-datasets on 3.11, undeclared there
    "tensorflow-model-optimization==0.8.1",
    "absl-py==1.4.0",  # tensorflow-model-optimization pins absl-py ~= 1.2
    "ai-edge-litert==2.3.0",  # the TFLite runtime (tflite-runtime fails under numpy 2)
    "numpy==2.4.6",
    "matplotlib==3.11.2",
    "tensorboard==2.21.0",  # TensorBoard logs of training runs (not pulled in by tensorflow 2.21)
]

# the command-line programs (ofa_tf/cli/), installed on PATH by `pip install`
CONSOLE_SCRIPTS = [
    "ofa-train=ofa_tf.cli.train:main",
    "ofa-evaluate=ofa_tf.cli.evaluate:main",
    "ofa-search=ofa_tf.cli.search:main",
    "ofa-train-predictor=ofa_tf.cli.train_predictor:main",
    "ofa-export=ofa_tf.cli.export:main",
    "ofa-benchmark-latency=ofa_tf.cli.benchmark_latency:main",
    "ofa-build-lut=ofa_tf.cli.build_lut:main",
    "ofa-profile=ofa_tf.cli.profile:main",
    "ofa-plot-pareto=ofa_tf.cli.plot_pareto:main",
    "ofa-import-ofa=ofa_tf.cli.import_ofa:main",
    "ofa-export-ofa=ofa_tf.cli.export_ofa:main",
    "ofa-check-data=ofa_tf.cli.check_data:main",
]

# Optional: reading and writing OFA's PyTorch checkpoints (ofa_tf/interop). 2.13.0 is pinned
# because its CPU-only build installs here (see BUILD.md); other releases pull CUDA builds of
# several GB.
TORCH_REQUIRES = ["torch==2.13.0"]
# The tests compare against OFA's own, unmodified PyTorch code (its package on PyPI).
TEST_REQUIRES = ["pytest==9.2.0", "pytest-xdist==3.8.0", *TORCH_REQUIRES, "ofa==0.1.0.post202307202001"]

setup(
    name="ofa_tf",
    version="0.1.0",
    description="Once-for-all supernet training, search and TFLite deployment for Keras 3 / TensorFlow",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.13",  # numpy 2.4 needs 3.11
    packages=find_packages(include=["ofa_tf", "ofa_tf.*"]),  # the commands are console scripts below
    install_requires=INSTALL_REQUIRES,
    extras_require={"torch": TORCH_REQUIRES, "test": TEST_REQUIRES},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    license="Apache-2.0",
)
