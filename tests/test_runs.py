"""The one resume rule (ef_keras.runs): settings recorded once, a re-run with other settings refused by name."""

import json

import numpy as np
import pytest
import tensorflow as tf

from ef_keras import runs
from ef_keras.errors import EfKerasError


def test_same_settings_resume_and_json_equal_values_are_the_same():
    assert runs.changed_settings({"widths": [1, 2], "lr": 0.1}, {"widths": (1, 2), "lr": 0.1}) == {}


def test_differences_are_named_by_dotted_key_with_both_values():
    recorded = {"seed": 0, "recipe": {"base_lr": 1e-3, "epochs": 300}, "data": "digits"}
    now = {"seed": 0, "recipe": {"base_lr": 2e-3, "epochs": 300}, "mixing": "hard"}
    assert runs.changed_settings(recorded, now) == {"data": ("digits", None), "mixing": (None, "hard"),
                                                    "recipe.base_lr": (1e-3, 2e-3)}
    with pytest.raises(EfKerasError) as e:
        runs.check_same_settings(recorded, now, where="runs/a", error=EfKerasError, hint="use another --out")
    assert str(e.value) == ("runs/a holds a run with other settings (data='digits' there, None now; mixing=None there, "
                            "'hard' now; recipe.base_lr=0.001 there, 0.002 now); use another --out")


def test_long_lists_of_differences_are_cut():
    with pytest.raises(EfKerasError, match=r"k3=3 there, None now and 2 more\); x$"):
        runs.check_same_settings({f"k{i}": i for i in range(6)}, {}, where="d", error=EfKerasError, hint="x")


def test_run_directory_records_then_refuses_other_settings(tmp_path):
    settings = {"arch": "l1", "seed": 0, "widths": (48, 96)}
    assert runs.resume_settings(str(tmp_path), settings, error=EfKerasError) is False
    runs.record_settings(str(tmp_path), settings)
    assert json.loads((tmp_path / runs.SETTINGS_FILE).read_text()) == {"arch": "l1", "seed": 0, "widths": [48, 96]}
    assert runs.resume_settings(str(tmp_path), settings, error=EfKerasError) is True
    with pytest.raises(EfKerasError, match=r"seed=0 there, 1 now\); resume with the same settings or use another --out"):
        runs.resume_settings(str(tmp_path), {**settings, "seed": 1}, error=EfKerasError)
    (tmp_path / runs.SETTINGS_FILE).write_text("{not json")
    with pytest.raises(EfKerasError, match="run record .* is not valid JSON"):
        runs.resume_settings(str(tmp_path), settings, error=EfKerasError)


def test_files_sha256_is_the_sha256_of_the_concatenated_contents(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / "b").write_bytes(b"def")
    # sha256("abcdef"), from a reference implementation (coreutils: printf abcdef | sha256sum)
    assert runs.files_sha256(str(tmp_path / "a"), str(tmp_path / "b")) == \
        "bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721"


def test_checkpoints_save_restore_and_keep_the_newest(tmp_path):
    v = tf.Variable(np.zeros(3, "float32"))
    step = tf.Variable(0, dtype=tf.int64)
    ckpt = runs.Checkpoints(str(tmp_path), keep=2, error=EfKerasError, v=v, step=step)
    assert ckpt.restore() is False and ckpt.latest is None
    for i in (1, 2, 3):
        v.assign([i, i, i])
        step.assign(i)
        ckpt.save(i)
    assert sorted(f for f in tmp_path.iterdir() if f.name.endswith(".index")) == \
        [tmp_path / "ckpt-2.index", tmp_path / "ckpt-3.index"]
    v2, step2 = tf.Variable(np.zeros(3, "float32")), tf.Variable(0, dtype=tf.int64)
    assert runs.Checkpoints(str(tmp_path), keep=2, error=EfKerasError, v=v2, step=step2).restore() is True
    assert int(step2.numpy()) == 3 and v2.numpy().tolist() == [3, 3, 3]
    other = runs.Checkpoints(str(tmp_path), keep=2, error=EfKerasError, w=tf.Variable(np.zeros(5, "float32")))
    with pytest.raises(EfKerasError, match="cannot resume from checkpoint .*ckpt-3"):
        other.restore()
