"""Handlers: atomic checkpoint files and the resume helpers."""

from __future__ import annotations

import os

import pytest
import torch
from ignite.engine import Engine, Events

from semcl_components.bundle_runtime.handlers import AtomicCheckpointSaver, epoch_checkpoints


def _files(folder) -> list[str]:
    """The files of a folder, without the hidden lock file a running trainer keeps there."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _engine() -> Engine:
    return Engine(lambda engine, batch: None)


class _Killed(Exception):
    """Stands for a process killed while writing a checkpoint."""


def _fail_every_save(monkeypatch):
    real_save = torch.save

    def partial_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise _Killed

    monkeypatch.setattr(torch, "save", partial_save)


def _run(engine: Engine, epochs: int) -> None:
    try:
        engine.run([0], max_epochs=epochs)
    except _Killed:
        pass


def _objects() -> dict:
    net = torch.nn.Linear(3, 2)
    return {"model": net, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1)}


def test_a_kill_while_saving_keeps_the_previous_epoch_checkpoint(tmp_path, monkeypatch):
    objects = _objects()
    net = objects["model"]
    engine = _engine()
    AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict=objects, save_interval=1, n_saved=1, epoch_level=True).attach(engine)

    @engine.on(Events.EPOCH_COMPLETED(once=1))
    def _break_saving(_):
        _fail_every_save(monkeypatch)  # from now on every save dies half-way, as a SIGKILL during torch.save would

    with torch.no_grad():
        expected = net.weight.clone()
    _run(engine, epochs=3)
    assert _files(tmp_path) == ["checkpoint_epoch=1.pt"]  # no partial or temporary file
    monkeypatch.undo()
    torch.testing.assert_close(torch.load(tmp_path / "checkpoint_epoch=1.pt", weights_only=True)["model"]["weight"], expected)


def test_a_failed_save_of_a_fixed_name_file_keeps_the_old_file(tmp_path, monkeypatch):
    net = torch.nn.Linear(3, 2)
    first = net.weight.detach().clone()
    engine = _engine()
    AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_final=True, final_filename="model.pt").attach(engine)
    engine.run([0], max_epochs=1)
    with torch.no_grad():
        net.weight.add_(1.0)
    _fail_every_save(monkeypatch)
    second = _engine()
    AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_final=True, final_filename="model.pt").attach(second)
    _run(second, epochs=1)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    torch.testing.assert_close(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], first)


def test_interval_checkpoints_are_found_newest_first(tmp_path):
    engine = _engine()
    AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict=_objects(), save_interval=1, n_saved=2, epoch_level=True).attach(engine)
    engine.run([0, 1], max_epochs=3)
    (path, epoch), _ = epoch_checkpoints(tmp_path)
    assert epoch == 3 and path.endswith("checkpoint_epoch=3.pt")
    assert _files(tmp_path) == ["checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt"]


def test_no_checkpoint_gives_none(tmp_path):
    assert epoch_checkpoints(tmp_path) == []


def test_resume_continues_and_removes_the_previous_sessions_checkpoint(tmp_path):
    from semcl_components.bundle_runtime.handlers import CheckpointResumer

    def session(max_epochs: int) -> list[int]:
        objects = _objects()
        engine = _engine()
        CheckpointResumer(tmp_path, load_dict={**objects, "trainer": engine}).attach(engine)
        saver = AtomicCheckpointSaver(
            save_dir=str(tmp_path), save_dict={**objects, "trainer": engine}, save_interval=1, n_saved=1, epoch_level=True
        )
        saver.attach(engine)
        epochs: list[int] = []
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append(e.state.epoch))
        engine.run([0, 1], max_epochs=max_epochs)
        return epochs

    assert session(2) == [1, 2]
    assert _files(tmp_path) == ["checkpoint_epoch=2.pt"]
    assert session(4) == [3, 4]  # resumed after epoch 2
    assert _files(tmp_path) == ["checkpoint_epoch=4.pt"]  # epoch 2's file is gone


# ----------------------------------------------------------------------------------------- resuming: what is kept


def _session(
    folder,
    max_epochs: int,
    enabled=True,
    kill_after: int | None = None,
    net_size: int = 3,
    run_settings: dict | None = None,
) -> list[int]:
    """One training session with a resumer and an every-epoch saver; ``kill_after``: raise after that epoch;
    ``run_settings``: the settings the resumer records in each checkpoint and compares on resuming."""
    from semcl_components.bundle_runtime.handlers import CheckpointResumer

    net = torch.nn.Linear(net_size, 2)
    objects = {"model": net, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1)}
    engine = _engine()
    resumer = CheckpointResumer(
        folder, load_dict={**objects, "trainer": engine}, enabled=enabled, run_settings=run_settings
    )
    resumer.attach(engine)
    saved = {**objects, "trainer": engine, **({"resume_state": resumer} if run_settings is not None else {})}
    saver = AtomicCheckpointSaver(save_dir=str(folder), save_dict=saved, save_interval=1, n_saved=1, epoch_level=True)
    saver.attach(engine)
    epochs: list[int] = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append(e.state.epoch))
    if kill_after is not None:

        @engine.on(Events.EPOCH_STARTED)
        def _kill(e):
            if e.state.epoch > kill_after:
                raise _Killed

    try:
        engine.run([0, 1], max_epochs=max_epochs)
    except _Killed:
        resumer.release()  # the OS does this when a killed process exits
    return epochs


def test_unreadable_newest_checkpoint_never_costs_the_good_one(tmp_path):
    """A truncated epoch-3 file beside a good epoch-2 file: resume from 2 and keep it until 3 is rewritten."""
    assert _session(tmp_path, 2) == [1, 2]
    (tmp_path / "checkpoint_epoch=3.pt").write_bytes(b"\x80\x02truncated")
    # resumed from epoch 2, killed at the start of epoch 3: before anything new was written
    assert _session(tmp_path, 5, kill_after=2) == []
    assert "checkpoint_epoch=2.pt" in _files(tmp_path)
    # the next session resumes from epoch 2 again and, once it has written epoch 3, drops both old files
    assert _session(tmp_path, 5) == [3, 4, 5]
    assert _files(tmp_path) == ["checkpoint_epoch=5.pt"]


def test_resume_false_starts_over_and_drops_old_checkpoints_once_it_has_its_own(tmp_path):
    assert _session(tmp_path, 3) == [1, 2, 3]
    assert _session(tmp_path, 2, enabled="false") == [1, 2]  # the string, as the command line gives it
    assert _files(tmp_path) == ["checkpoint_epoch=2.pt"]
    assert _session(tmp_path, 3) == [3]  # a later resume continues this run, not the old one


@pytest.mark.parametrize("value", ["FALSE", "no", "maybe"])
def test_resume_setting_reads_booleans_as_written(tmp_path, value):
    from semcl_components.bundle_runtime.handlers import CheckpointResumer

    if value == "maybe":
        with pytest.raises(ValueError, match="resume must be true or false, got 'maybe'"):
            CheckpointResumer(tmp_path, load_dict={}, enabled=value)
    else:
        assert CheckpointResumer(tmp_path, load_dict={}, enabled=value).enabled is False


def test_second_run_on_a_ckpt_dir_in_use_is_refused_naming_the_first(tmp_path):
    from semcl_components.bundle_runtime.folder_lock import FolderInUseError, FolderLock

    holder = FolderLock(tmp_path, "ckpt_dir")
    holder.acquire()
    try:
        with pytest.raises(FolderInUseError, match=rf"ckpt_dir {tmp_path} is in use by pid {os.getpid()} on"):
            _session(tmp_path, 1)
    finally:
        holder.release()
    assert _session(tmp_path, 1) == [1]


def test_unwritable_ckpt_dir_fails_before_the_first_epoch(tmp_path):
    (tmp_path / "a_file").write_text("")
    folder = tmp_path / "a_file" / "models"  # cannot be created, even by root (read-only folders are not, for root)
    from semcl_components.bundle_runtime.handlers import CheckpointResumer

    engine = _engine()
    CheckpointResumer(folder, load_dict={"model": torch.nn.Linear(2, 2)}).attach(engine)
    with pytest.raises(PermissionError, match=f"cannot write to ckpt_dir {folder}"):
        engine.run([0], max_epochs=1)


def test_checkpoint_of_other_settings_names_the_file_and_the_way_out(tmp_path):
    assert _session(tmp_path, 1) == [1]
    with pytest.raises(RuntimeError, match=r"checkpoint .*checkpoint_epoch=1.pt does not fit this run .*--resume false"):
        _session(tmp_path, 2, net_size=5)


# ------------------------------------------------------------------------------- resuming: only the same run


RUN = {"dataset_dir": "/data/phantoms", "train_key": "finetune_4", "learning_rate": 0.001, "roi_size": [32, 32, 32]}


def test_resume_with_other_settings_stops_naming_them_and_touches_nothing(tmp_path):
    """Issue 19, finding 2: another dataset, split and learning rate in the same ckpt_dir resumed the old run."""
    assert _session(tmp_path, 2, run_settings=RUN) == [1, 2]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = {**RUN, "dataset_dir": "/data/btcv", "train_key": "finetune_1", "learning_rate": 0.01}
    with pytest.raises(ValueError) as error:
        _session(tmp_path, 2, run_settings=other)
    message = str(error.value)
    assert f"checkpoint {tmp_path / 'checkpoint_epoch=2.pt'} belongs to a run with other settings" in message
    assert "dataset_dir '/data/phantoms' then, '/data/btcv' now" in message
    assert "train_key 'finetune_4' then, 'finetune_1' now" in message and "learning_rate 0.001 then, 0.01 now" in message
    assert "roi_size" not in message
    assert "--ckpt_dir" in message and "--resume false" in message
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # refused before the trainer started


def test_resume_with_the_same_settings_continues(tmp_path):
    assert _session(tmp_path, 2, run_settings=RUN) == [1, 2]
    as_given_again = {**RUN, "roi_size": (32, 32, 32)}  # a tuple is the same list of sizes
    assert _session(tmp_path, 3, run_settings=as_given_again) == [3]


def test_resume_false_starts_a_new_run_with_other_settings(tmp_path):
    assert _session(tmp_path, 2, run_settings=RUN) == [1, 2]
    other = {**RUN, "train_key": "finetune_1"}
    assert _session(tmp_path, 1, enabled=False, run_settings=other) == [1]
    assert _session(tmp_path, 2, run_settings=other) == [2]  # the new run's record is the one compared now


def test_checkpoint_without_a_settings_record_resumes_with_a_warning(tmp_path, caplog):
    assert _session(tmp_path, 1) == [1]  # no record, as written before runs recorded their settings
    with caplog.at_level("WARNING"):
        assert _session(tmp_path, 2, run_settings=RUN) == [2]
    assert "records no run settings" in caplog.text


# ------------------------------------------------------------------------------------------ non-finite weights


def test_saver_refuses_non_finite_weights_and_keeps_the_previous_file(tmp_path):
    net = torch.nn.Linear(3, 2)
    engine = _engine()
    AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_final=True, final_filename="model.pt").attach(engine)
    engine.run([0], max_epochs=1)
    good = torch.load(tmp_path / "model.pt", weights_only=True)["weight"]
    with torch.no_grad():
        net.weight[0, 0] = float("nan")
    second = _engine()
    AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_final=True, final_filename="model.pt").attach(second)
    with pytest.raises(RuntimeError, match=r"not writing .*model.pt: the weights hold NaN or infinite values \(weight\)"):
        second.run([0], max_epochs=1)
    torch.testing.assert_close(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], good)


def test_final_file_is_not_written_when_the_run_fails(tmp_path):
    engine = Engine(lambda e, b: (_ for _ in ()).throw(RuntimeError("boom")))
    AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": torch.nn.Linear(2, 2)}, save_final=True,
                          final_filename="encoder.pt").attach(engine)
    with pytest.raises(RuntimeError, match="boom"):
        engine.run([0], max_epochs=1)
    assert _files(tmp_path) == []


def test_non_finite_loss_stops_before_the_update_naming_the_files():
    from monai.data import MetaTensor
    from monai.engines import SupervisedTrainer

    from semcl_components.bundle_runtime.handlers import NonFiniteLossError, StopOnNonFiniteLoss

    net = torch.nn.Conv3d(1, 2, 1)
    before = net.weight.detach().clone()
    image = MetaTensor(torch.rand(2, 1, 4, 4, 4), meta={"filename_or_obj": ["a.nii.gz", "b.nii.gz"]})
    image[1, 0, 0, 0, 0] = float("nan")
    batch = {"image": image, "label": torch.zeros(2, 1, 4, 4, 4, dtype=torch.long)}
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[batch], network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=torch.nn.CrossEntropyLoss(),
        train_handlers=[StopOnNonFiniteLoss()],
    )
    trainer.prepare_batch = lambda b, *a, **k: (b["image"], b["label"][:, 0])
    with pytest.raises(NonFiniteLossError, match=r"loss became nan .*a.nii.gz, b.nii.gz"):
        trainer.run()
    assert torch.equal(net.weight, before)


# ------------------------------------------------------------------------------------ validation and run summary


def _validator(metric_by_epoch: list[float]):
    from monai.engines import Evaluator

    evaluator = Evaluator(device=torch.device("cpu"), val_data_loader=[0], iteration_update=lambda e, b: None)
    calls: list[int] = []

    @evaluator.on(Events.COMPLETED)
    def _metrics(e):
        calls.append(len(calls))
        e.state.metrics = {"val_mean_dice": metric_by_epoch[len(calls) - 1]}
        e.state.metric_details = {"val_mean_dice": torch.tensor([[0.5, float(len(calls))]])}

    return evaluator, calls


@pytest.mark.parametrize("max_epochs, interval, expected", [(3, 5, [3]), (7, 5, [5, 7]), (10, 5, [5, 10])])
def test_final_validation_handler_validates_the_last_epoch(max_epochs, interval, expected):
    from semcl_components.bundle_runtime.handlers import FinalValidationHandler

    evaluator, _ = _validator([0.1] * 5)
    validated = []
    evaluator.run = lambda epoch: validated.append(epoch)  # what ValidationHandler calls
    engine = _engine()
    FinalValidationHandler(interval=interval, validator=evaluator).attach(engine)
    engine.run([0], max_epochs=max_epochs)
    assert validated == expected


def test_run_summary_records_validation_only_for_epochs_it_ran(tmp_path):
    import json

    from semcl_components.bundle_runtime.handlers import FinalValidationHandler, RunSummaryWriter

    evaluator, _ = _validator([0.2, 0.4])
    engine = _engine()
    FinalValidationHandler(interval=2, validator=evaluator).attach(engine)
    RunSummaryWriter(tmp_path / "summary.json", "train", evaluator=evaluator, class_names=["liver", "spleen"]).attach(engine)
    engine.run([0, 1], max_epochs=3)
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert [("val" in h) for h in summary["history"]] == [False, True, True]  # epoch 2, then the final epoch 3
    assert summary["history"][1]["val"] == {"val_mean_dice": 0.2}
    assert summary["history"][2]["val_per_class"] == {"val_mean_dice": {"liver": 0.5, "spleen": 2.0}}
    assert summary["final_val"] == {"val_mean_dice": 0.4} and summary["status"] == "completed"


def test_run_summary_records_the_steps_and_seconds_at_each_epoch(tmp_path):
    """The data of a time-to-accuracy curve: the iteration and wall time at the end of every epoch."""
    import json

    from semcl_components.bundle_runtime.handlers import RunSummaryWriter

    engine = _engine()
    RunSummaryWriter(tmp_path / "summary.json", "train").attach(engine)
    engine.run([0, 1, 2], max_epochs=2)  # three iterations per epoch
    history = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))["history"]
    assert [h["iteration"] for h in history] == [3, 6]
    assert 0 <= history[0]["wall_time_s"] <= history[1]["wall_time_s"]


def test_run_summary_says_failed_with_the_error(tmp_path):
    import json

    from semcl_components.bundle_runtime.handlers import RunSummaryWriter

    engine = Engine(lambda e, b: (_ for _ in ()).throw(ValueError("bad batch")))
    RunSummaryWriter(tmp_path / "summary.json", "train").attach(engine)
    with pytest.raises(ValueError):
        engine.run([0], max_epochs=2)
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "failed" and summary["error"] == "ValueError: bad batch"



_SIGTERM_SCRIPT = """
import os, signal, sys
from ignite.engine import Engine, Events
from semcl_components.bundle_runtime.handlers import RunSummaryWriter

engine = Engine(lambda engine, batch: None)
RunSummaryWriter(sys.argv[1], "train").attach(engine)

@engine.on(Events.ITERATION_COMPLETED(once=5))
def stop(_):  # what a job scheduler or `kill PID` does
    os.kill(os.getpid(), signal.SIGTERM)

engine.run(range(3), max_epochs=4)
"""


def test_run_summary_says_interrupted_after_sigterm(tmp_path):
    import json
    import signal
    import subprocess
    import sys

    summary_file = tmp_path / "summary.json"
    result = subprocess.run([sys.executable, "-c", _SIGTERM_SCRIPT, str(summary_file)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode in (128 + signal.SIGTERM, -signal.SIGTERM), result.stderr[-2000:]
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    assert summary["status"] == "interrupted" and "SIGTERM" in summary["error"], summary
    assert summary["epochs_completed"] == 1 and [h["epoch"] for h in summary["history"]] == [1]


def test_run_summary_gives_sigterm_back_when_the_run_ends(tmp_path):
    import signal

    from semcl_components.bundle_runtime.handlers import RunSummaryWriter

    before = signal.getsignal(signal.SIGTERM)
    engine = _engine()
    RunSummaryWriter(tmp_path / "summary.json", "train").attach(engine)
    engine.run([0], max_epochs=1)
    assert signal.getsignal(signal.SIGTERM) is before


def test_confusion_matrix_counts_missed_and_swapped_voxels(tmp_path):
    from semcl_components.bundle_runtime.handlers import ConfusionMatrixWriter

    label = torch.tensor([0, 0, 1, 1, 2, 2, 2]).reshape(1, 7, 1, 1)
    pred = torch.tensor([0, 1, 0, 1, 1, 1, 2]).reshape(1, 7, 1, 1)  # one class-1 voxel missed, two class-2 swapped
    one_hot = torch.nn.functional.one_hot(pred[0], 3).permute(3, 0, 1, 2)
    names = ["background", "liver", "spleen"]
    for folder, prediction in (("ids", pred), ("one_hot", one_hot)):  # class ids and one-hot count alike
        engine = Engine(lambda e, b, prediction=prediction: [{"pred": prediction, "label": label}])
        ConfusionMatrixWriter(tmp_path / folder, names).attach(engine)
        engine.run([0, 1], max_epochs=1)  # two identical cases
        lines = (tmp_path / folder / "confusion_matrix.csv").read_text(encoding="utf-8").splitlines()
        assert lines == ["true \\ predicted,background,liver,spleen", "background,2,2,0", "liver,2,2,0", "spleen,0,4,2"]
    assert (tmp_path / "ids" / "confusion_matrix.png").stat().st_size > 1000


def test_confusion_matrix_starts_again_with_each_run_and_refuses_mismatched_shapes(tmp_path):
    from semcl_components.bundle_runtime.handlers import ConfusionMatrixWriter

    label = torch.tensor([0, 1, 1]).reshape(1, 3, 1, 1)
    engine = Engine(lambda e, b: [{"pred": label, "label": label}])
    ConfusionMatrixWriter(tmp_path, ["background", "liver"]).attach(engine)
    engine.run([0], max_epochs=1)
    engine.run([0], max_epochs=1)  # a second evaluation counts its own cases only
    assert (tmp_path / "confusion_matrix.csv").read_text(encoding="utf-8").splitlines()[1:] == ["background,1,0", "liver,0,2"]
    engine = Engine(lambda e, b: [{"pred": label, "label": label[:, :2]}])
    ConfusionMatrixWriter(tmp_path, ["background", "liver"]).attach(engine)
    with pytest.raises(ValueError, match=r"differ in shape: \(1, 3, 1, 1\) vs \(1, 2, 1, 1\)"):
        engine.run([0], max_epochs=1)


_FULL_DISK_SCRIPT = """
import resource, signal, sys
import torch
from ignite.engine import Engine, Events
from semcl_components.bundle_runtime.handlers import AtomicCheckpointSaver

net = torch.nn.Linear(200, 100)  # an 80 kB checkpoint
engine = Engine(lambda engine, batch: None)
AtomicCheckpointSaver(save_dir=sys.argv[1], save_dict={"model": net, "optimizer": torch.optim.SGD(net.parameters(), 0.1)},
                      save_interval=1, n_saved=1,
                      epoch_level=True).attach(engine)

@engine.on(Events.EPOCH_COMPLETED(once=1))
def fill_the_disk(_):  # after the first checkpoint: no file of this process may grow past 20 kB
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails (EFBIG) instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))

engine.run([0], max_epochs=2)
"""


def test_a_full_disk_while_saving_a_checkpoint_names_the_file_and_keeps_the_previous_one(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _FULL_DISK_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "could not write checkpoint" in last_line and "checkpoint_epoch=2.pt" in last_line, result.stderr[-2000:]
    assert "disk" in last_line and "free" in last_line and "kept" in last_line, last_line
    assert _files(tmp_path) == ["checkpoint_epoch=1.pt"]
    assert torch.load(tmp_path / "checkpoint_epoch=1.pt", weights_only=True)["model"]["weight"].shape == (100, 200)


class _RunsCode:
    """A pickled object that would run code when unpickled (here a harmless ``print``)."""

    def __reduce__(self):
        return print, ("this ran while loading",)


def _truncated_weights(path) -> None:
    torch.save(torch.nn.Linear(30, 20).state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pickle_with_code(path) -> None:
    torch.save({"weight": torch.zeros(2, 3), "extra": _RunsCode()}, path)


@pytest.mark.parametrize(
    "make, expected",
    [(_truncated_weights, "damaged or cut short"), (_pickle_with_code, "objects other than tensors and plain containers (print:")],
)
def test_a_model_pt_that_is_not_a_weights_file_is_named_without_blaming_settings(tmp_path, capsys, make, expected):
    from semcl_components.bundle_runtime.handlers import WeightsLoader

    path = tmp_path / "model.pt"
    make(path)
    with pytest.raises(ValueError) as raised:
        WeightsLoader(load_path=str(path), load_dict={"model": torch.nn.Linear(30, 20)})(_engine())
    message = str(raised.value)
    assert str(path) in message and expected in message, message
    assert "other settings" not in message and "weights_only=False" not in message
    assert "this ran while loading" not in capsys.readouterr().out


@pytest.mark.parametrize("labels_json", ["", "/data/btcv/dataset.json"])
def test_a_model_pt_of_other_classes_names_both_counts_and_where_the_classes_came_from(tmp_path, labels_json):
    """Issue 35: a class-count mismatch said only 'Error(s) in loading state_dict' (the sizes lost) and blamed
    metadata.json also for a run whose classes came from --labels_json."""
    from monai.networks.nets import SegResNet

    from semcl_components.bundle_runtime.handlers import WeightsLoader

    def network(classes: int) -> torch.nn.Module:
        return SegResNet(3, 8, 1, classes + 1, blocks_down=[1, 1], blocks_up=[1])

    path = tmp_path / "model.pt"
    torch.save(network(3).state_dict(), path)
    with pytest.raises(RuntimeError) as raised:
        WeightsLoader(load_path=str(path), load_dict={"model": network(8)}, labels_json=labels_json)(_engine())
    message = str(raised.value)
    assert f"the weights in {path} do not fit this network" in message
    assert "conv_final.2.conv.weight: [4, 8, 1, 1, 1] in the file, [9, 8, 1, 1, 1] in this network" in message
    assert "the file's model has 4 output channels (3 classes and background), this run's network 9 (8 classes" in message
    source = f"from --labels_json {labels_json})" if labels_json else "from channel_def in configs/metadata.json, as no"
    assert source in message and ("metadata.json" not in message) == bool(labels_json)
