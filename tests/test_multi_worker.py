"""`--strategy multi_worker` (issue 22): TF_CONFIG checks, the peer timeout, and 2 workers on 127.0.0.1.

The 2-worker runs start real `python -m ef_keras.train` processes (and supernet trainings)
with TF_CONFIG (one CPU replica each) and compare the chief's trained model with a
single-process run of the same global batch, within the MirroredStrategy tests' tolerances
(tests/test_train.py, tests/test_supernet.py). Only CPU workers on one host are exercised
here; GPUs, several hosts and TPUs go through the same code path.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from helpers import (SUPERNET_DEPTHS, SUPERNET_MIN_WIDTHS, SUPERNET_WIDTHS, TINY,
                     supernet_children_logits)

from ef_keras.errors import one_line
from ef_keras.training.loop import TrainError, cluster_task, local_cluster, make_strategy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
#: The MirroredStrategy test's recipe: 4 steps of batch 16 (8 per worker), SyncBN, AGC.
ARGS = ["--data", "digits", "--recipe", "embedded", "--epochs", "1", "--steps-per-epoch", "4", "--eval-steps", "2",
        "--batch-size", "16", "--image-size", "64", "--augment", "none", "--agc", "0.01", "--checkpoint-every", "1",
        "--verbose", "2"]
FIX = ("set TF_CONFIG on every worker, e.g. '{\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
       "\"task\": {\"type\": \"worker\", \"index\": 0}}' (index 1 on the second worker)")


@pytest.mark.parametrize("tf_config, message", [
    (None, f"--strategy multi_worker needs the TF_CONFIG environment variable: {FIX}"),
    ("{cluster: 1}", f"TF_CONFIG is not valid JSON (Expecting property name enclosed in double quotes at character 1): "
                     f"{FIX}"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     f'TF_CONFIG has no "cluster" with a "worker" (or "chief") list of "host:port" addresses: {FIX}'),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "TF_CONFIG's \"task\" must name this process in the cluster (\"type\" one of worker, \"index\" below that list's "
     f"length), got {{'type': 'worker', 'index': 2}}: {FIX}"),
])
def test_a_missing_or_invalid_tf_config_is_one_line_that_shows_a_valid_one(tf_config, message, monkeypatch):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(TrainError) as info:
        make_strategy("multi_worker")
    assert one_line(info.value) == message


def test_cluster_task_reads_a_valid_tf_config(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", '
                                    '"index": 0}}')
    assert cluster_task() == ({"chief": ["a:1"], "worker": ["b:2"]}, "worker", 0)


#: Every training process a test starts; the fixture below kills what a failed test left running.
_STARTED = []


@pytest.fixture(autouse=True)
def _no_process_left():
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _train(out, extra=(), env=None, **kwargs):
    proc = subprocess.Popen([sys.executable, "-m", "ef_keras.train", "--model", str(out.parent / "tiny.json"), *ARGS,
                             *extra, "--out", str(out)], cwd=ROOT, env=env or ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)
    _STARTED.append(proc)
    return proc


def test_a_worker_whose_peers_never_come_is_a_timeout_with_one_line(tmp_path):
    TINY.save(str(tmp_path / "tiny.json"))
    started = time.monotonic()
    proc = _train(tmp_path / "run", ["--strategy", "multi_worker", "--peer-timeout", "5"],
                  env={**ENV, "TF_CONFIG": local_cluster(2)[0]})
    _, stderr = proc.communicate(timeout=600)  # a hang fails here; the fixture kills the process
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == -9, stderr[-3000:]  # killed by its watchdog: TensorFlow holds the interpreter
    assert len(errors) == 1 and " did not reach its peers 127.0.0.1:" in errors[0] and "within 5 s" in errors[0], \
        stderr[-3000:]
    assert "Traceback" not in stderr and time.monotonic() - started < 600
    assert not os.path.exists(tmp_path / "run")


def _weights(path):
    return keras.saving.load_model(path).get_weights()


def _max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def _start_workers(tmp_path, out):
    return [_train(out, ["--strategy", "multi_worker", "--peer-timeout", "600"], env={**ENV, "TF_CONFIG": config})
            for config in local_cluster(2)]


def _finish(procs, timeout=900):
    results = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in results]


@pytest.mark.slow  # three to five TensorFlow processes training in turn: minutes on 2 shared cores
def test_two_workers_on_localhost_train_as_one_and_resume_after_a_worker_is_killed(tmp_path):
    TINY.save(str(tmp_path / "tiny.json"))
    single = _train(tmp_path / "single", ["--strategy", "one_device"])
    single_out = _finish([single])[0]
    reference = _weights(tmp_path / "single" / "model.keras")

    # Two workers x 8 images (SyncBN, summed gradients) == one process x 16, as for MirroredStrategy.
    outs = _finish(_start_workers(tmp_path, tmp_path / "mw"))
    assert all("done: eval top-1" in out for out in outs)
    # The same eval numbers as the single process (eval batches are split over the workers and summed).
    assert outs[0].splitlines()[-2] == single_out.splitlines()[-2], (outs[0], single_out)
    assert json.load(open(tmp_path / "mw" / "results.json"))["replicas"] == 2
    assert os.path.exists(tmp_path / "mw.worker-1" / "model.keras")  # the non-chief wrote beside, not over it
    assert _max_diff(_weights(tmp_path / "mw" / "model.keras"), reference) < 2e-3

    # Kill worker 1 once the chief has checkpointed a step; the chief cannot go on without it (it is stopped if it
    # waits); the same two commands then resume from the checkpoints and end where the uninterrupted run did.
    procs = _start_workers(tmp_path, tmp_path / "killed")
    deadline = time.monotonic() + 900
    while not glob.glob(str(tmp_path / "killed" / "checkpoints" / "*.index")):
        assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].communicate()[1][-3000:]
        time.sleep(0.5)
    procs[1].send_signal(signal.SIGKILL)
    try:
        procs[0].communicate(timeout=60)
    except subprocess.TimeoutExpired:
        procs[0].send_signal(signal.SIGKILL)
        procs[0].communicate()
    assert not os.path.exists(tmp_path / "killed" / "model.keras")
    outs = _finish(_start_workers(tmp_path, tmp_path / "killed"))
    assert "resume:" in outs[0], outs[0]
    assert _max_diff(_weights(tmp_path / "killed" / "model.keras"), reference) < 2e-3


#: One supernet training run: argv = output directory, strategy ("mirrored": 2 logical CPUs in this process),
#: settings (JSON, the space as a dict); the weights go to <out>.npz.
_SUPERNET = """
import json, sys
import numpy as np
import tensorflow as tf
out, strategy, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if strategy == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from search.space import SearchSpace
from search.train_supernet import train_supernet
supernet, _ = train_supernet(out, strategy=strategy, log=print,
                             **{**settings, "space": SearchSpace.from_dict(settings["space"])})
np.savez(out + ".npz", *[v.numpy() for v in supernet.weights])
"""


def _supernet_space():
    from ef_keras.models.efficientformer.config import EfficientFormerConfig
    from search.space import SearchSpace

    return SearchSpace(EfficientFormerConfig(widths=SUPERNET_WIDTHS, depths=SUPERNET_DEPTHS, num_vit=0),
                       min_widths=SUPERNET_MIN_WIDTHS)


def _train_supernet(out, strategy, env=None):
    """As the MirroredStrategy supernet test: 4 steps of batch 16 (the second epoch also trains α), hard mixing (every
    child's MetaPaths pass tf.switch_case) and the sandwich rule (4 children make one update)."""
    settings = dict(space=_supernet_space().to_dict(), data="digits", image_size=64, epochs=2, warmup_epochs=1,
                    steps_per_epoch=2, batch_size=16, mixing="hard", rule="sandwich", augment="none")
    proc = subprocess.Popen([sys.executable, "-c", _SUPERNET, str(out), strategy, json.dumps(settings)], cwd=ROOT,
                            env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _STARTED.append(proc)
    return proc


def _children_logits(weights_file):
    """`supernet_children_logits` of the supernet whose weights a run saved."""
    from search.supernet import Supernet

    supernet = Supernet(_supernet_space(), image_size=64, classes=10)
    saved = np.load(weights_file)
    for i, v in enumerate(supernet.weights):
        v.assign(saved[f"arr_{i}"])
    return supernet_children_logits(supernet)


def _losses(log):
    """The progress lines of a supernet run without their timings."""
    return [line.split("(")[0] for line in log.splitlines() if line.startswith("supernet step")]


@pytest.mark.slow  # four supernet trainings in three TensorFlow processes: minutes on 2 shared cores
def test_two_workers_train_the_supernet_as_mirrored_strategy_and_as_one_device_do(tmp_path):
    outs = _finish([_train_supernet(tmp_path / "mw", "multi_worker", {**ENV, "TF_CONFIG": config})
                    for config in local_cluster(2)])
    assert os.path.exists(tmp_path / "mw.worker-1" / "supernet.json")  # the non-chief wrote beside, not over it
    mirrored, single = _finish([_train_supernet(tmp_path / "mirrored", "mirrored")]
                               + [_train_supernet(tmp_path / "single", "one_device")])
    assert _losses(outs[0]) == _losses(outs[1]) == _losses(mirrored) == _losses(single) and len(_losses(single)) == 4

    # Two workers compute what MirroredStrategy's two replicas in one process compute, to the bit.
    mw, mr = np.load(tmp_path / "mw.npz"), np.load(tmp_path / "mirrored.npz")
    assert max(float(np.abs(mw[k] - mr[k]).max()) for k in mw.files) == 0.0
    # Against one device on the whole batch, the trained network computes the same, within the MirroredStrategy
    # test's 1e-4 (on the children's logits: `supernet_children_logits` says why not on raw weights).
    for a, b in zip(_children_logits(tmp_path / "mw.npz"), _children_logits(tmp_path / "single.npz")):
        assert float(np.abs(a - b).max()) < 1e-4
