"""Handlers: atomic checkpoint files and the resume helpers."""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events

from semcl_components.handlers import AtomicCheckpointSaver, epoch_checkpoints


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=1.pt"]  # no partial or temporary file
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt"]


def test_no_checkpoint_gives_none(tmp_path):
    assert epoch_checkpoints(tmp_path) == []


def test_resume_continues_and_removes_the_previous_sessions_checkpoint(tmp_path):
    from semcl_components.handlers import CheckpointResumer

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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=2.pt"]
    assert session(4) == [3, 4]  # resumed after epoch 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=4.pt"]  # epoch 2's file is gone
