"""tf.distribute for training runs: which strategy, its cluster, and how a batch reaches replicas.

`--strategy`:
  default       one device (whatever TensorFlow picks);
  mirrored      every local GPU, or `cpu_devices` logical CPU devices (for CPU machines and tests);
  multi_worker  MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (one process per worker);
  tpu           TPUStrategy (TPU-ready code path: same train step and input path; untested here).

Two rules make a distributed run compute what one device computes:
- every replica sees its slice of the *same* global batch (`replica_batches`): each worker
  builds the identical seeded pipeline of global batches and keeps its replicas' slices
  (for the supervised stream it reads and decodes only those rows);
- the subnets of a step are drawn by the `PhaseController` from a generator seeded by the
  step, so every replica and worker trains the same subnets (no device-side randomness).
Gradients are summed across replicas by the optimizer, so the train step divides them by
the replica count. Batch norm normalises each replica's slice with that slice's statistics
(as Keras and OFA's PyTorch code do without SyncBN; a cross-replica all-reduce cannot run
inside the `tf.cond` that gates each subnet: TensorFlow refuses a merge_call there), so a
distributed step equals one device's step exactly when the slices have equal statistics,
and closely otherwise.

MultiWorkerMirroredStrategy must exist before TensorFlow runs its first op (collective ops
are configured at program start-up), so tools create it first (`create_strategy`) and the
run reuses it (`current_strategy`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import tensorflow as tf

from ofa_tf.choices import STRATEGIES, check_strategy  # noqa: F401 (STRATEGIES re-exported)
from ofa_tf.errors import OfaError, error_text


# What a collective operation raises when a peer worker died or restarted.
PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                 tf.errors.AbortedError, tf.errors.InternalError)


class WorkerLost(OfaError):
    """A peer worker of a multi-worker run died or restarted: the step could not complete.

    Keras `BackupAndRestore` semantics: every worker restarts from the last checkpoint
    (`ofa-train` re-executes itself; the restarted peer joins when it comes back)."""

_created: dict[str, Any] = {}


def parse_tf_config(text: str | None) -> dict[str, Any]:
    """Checks a TF_CONFIG value for a multi-worker run; returns it parsed.

    Raises OfaError (one line) for: missing or malformed JSON, no cluster or task, an
    address that is not host:port, an address listed twice (the same task named twice),
    or a task whose type / index the cluster does not have.
    """
    if not text:
        raise OfaError("strategy=multi_worker needs the TF_CONFIG environment variable "
                       "(see BUILD.md, 'Multi-worker training')")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise OfaError(f"TF_CONFIG is not valid JSON ({e.msg} at char {e.pos}): {text[:80]!r}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not config["cluster"]:
        raise OfaError(f"TF_CONFIG: expected {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, \"task\": ...}}, "
                       f"got {text[:80]!r}")
    cluster, task = config["cluster"], config.get("task")
    seen: dict[str, str] = {}
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise OfaError(f"TF_CONFIG: cluster[{job!r}] must be a non-empty list of host:port addresses")
        for i, address in enumerate(addresses):
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit():
                raise OfaError(f"TF_CONFIG: cluster[{job!r}][{i}]={address!r} is not host:port")
            if address in seen:
                raise OfaError(f"TF_CONFIG: {address} names two tasks ({seen[address]} and {job}[{i}])")
            seen[address] = f"{job}[{i}]"
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise OfaError("TF_CONFIG: expected a task like {\"type\": \"worker\", \"index\": 0}")
    job, index = task["type"], task["index"]
    if job not in cluster:
        raise OfaError(f"TF_CONFIG: task type {job!r} is not in the cluster {sorted(cluster)}")
    if not isinstance(index, int) or not 0 <= index < len(cluster[job]):
        raise OfaError(f"TF_CONFIG: task index {index!r} out of range for {len(cluster[job])} {job} task(s)")
    return config


def create_strategy(name: str, cpu_devices: int | None = None) -> tf.distribute.Strategy:
    """Creates (once per process) the strategy `name`. Call it before any TF op for
    multi_worker, and for mirrored with `cpu_devices` (device set-up happens at start-up)."""
    check_strategy(name)
    if cpu_devices is not None and cpu_devices < 1:
        raise OfaError(f"cpu_devices={cpu_devices}: expected a positive number")
    if name in _created:
        return _created[name]
    if _created:
        raise OfaError(f"strategy={name}: this process already uses strategy {next(iter(_created))!r}")
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=_local_devices(cpu_devices))
    elif name == "multi_worker":
        parse_tf_config(os.environ.get("TF_CONFIG"))
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:  # TensorFlow already started: collectives cannot be configured
            raise OfaError(f"strategy=multi_worker: {e} (create the strategy before any TensorFlow op)") from None
    else:
        strategy = _tpu_strategy()
    _created[name] = strategy
    return strategy


def current_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy a run uses: the one a tool created, else a new one."""
    return _created.get(name) or create_strategy(name)


def _local_devices(cpu_devices: int | None) -> list[str]:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and not cpu_devices:
        return [f"/gpu:{i}" for i in range(len(gpus))]
    count = cpu_devices or 1
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        if count > 1:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        existing = len(tf.config.list_logical_devices("CPU"))
        if existing != count:
            raise OfaError(f"cpu_devices={count}: TensorFlow already started with {existing} CPU device(s); "
                           "logical devices must be set before the first op") from None
    return [f"/cpu:{i}" for i in range(count)]


def _tpu_strategy() -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise OfaError(f"strategy=tpu: no TPU found ({error_text(e, 120)})") from None
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (the only process unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    cluster = resolver.cluster_spec().as_dict()
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def worker_name(strategy: tf.distribute.Strategy) -> str:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return "local"
    return f"{resolver.task_type}-{resolver.task_id}"


def check_global_batch(strategy: tf.distribute.Strategy, global_batch_size: int) -> None:
    """A global batch must split evenly over the strategy's replicas."""
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        name = next((n for n, s in _created.items() if s is strategy), type(strategy).__name__)
        raise OfaError(f"batch_size={global_batch_size}: must be divisible by the {replicas} replicas of "
                       f"strategy={name}")


def replica_batches(strategy: tf.distribute.Strategy, global_batches: Callable[[], tf.data.Dataset],
                    global_batch_size: int,
                    worker_rows: Callable[[int, int], tf.data.Dataset] | None = None):
    """A distributed dataset in which replica r of step t gets its share of global batch t:
    rows [r*n, (r+1)*n) of every tensor in the batch (n = that tensor's rows / replicas, so a
    semi-supervised batch with B labelled and μB unlabelled images splits each part evenly).

    Without `worker_rows` every worker builds the same `global_batches()` and keeps its
    replicas' rows (it reads and decodes the whole global batch). With it, a worker of a
    multi-worker run builds `worker_rows(start, stop)`: rows [start, stop) of every global
    batch, for its replicas only (`make_pipeline(rows=...)` reads and decodes just those),
    so the input work divides over the workers and the rows are the same ones."""
    check_global_batch(strategy, global_batch_size)
    replicas = strategy.num_replicas_in_sync

    def shares(batches: tf.data.Dataset, first: int, local: int, parts: int) -> tf.data.Dataset:
        """Replica-sized pieces [first, first + local) of batches split into `parts` equal pieces."""
        def share(tensor):
            rows = tf.shape(tensor)[0] // parts
            mine = tensor[first * rows:(first + local) * rows]
            return tf.reshape(mine, tf.concat([[local, rows], tf.shape(tensor)[1:]], 0))

        def split(*batch):
            batch = batch[0] if len(batch) == 1 else batch
            return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(share, batch))

        return batches.flat_map(split)

    def make(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local
        if worker_rows is not None and context.num_input_pipelines > 1:
            rows = global_batch_size // replicas
            dataset = shares(worker_rows(first * rows, (first + local) * rows), 0, local, local)
        else:
            dataset = shares(global_batches(), first, local, replicas)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return dataset.with_options(options)

    if replicas == 1 and not getattr(strategy, "cluster_resolver", None):
        return global_batches()
    return strategy.distribute_datasets_from_function(make)
