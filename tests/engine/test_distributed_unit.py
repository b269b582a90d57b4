"""``tlcli.engine.distributed`` outside torchrun: every function is the one-process identity
(world of one, rank 0, values and models handed back unchanged, ``on_main`` running its action
and re-raising its error). One test joins a real one-process Gloo group to show the same calls
do reach the collectives when a group is set up."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tlcli.core.errors import TlcliError
from tlcli.engine import distributed

TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def outside_torchrun(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not distributed.active()


def test_one_process_is_a_world_of_one_and_the_main_process():
    assert distributed.world_size() == 1
    assert distributed.rank() == 0
    assert distributed.is_main_process()


def test_without_a_group_the_rank_is_read_from_torchruns_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert distributed.world_size() == 4 and distributed.rank() == 2
    assert not distributed.is_main_process()


def test_on_main_runs_the_action_once_and_returns_its_result():
    calls = []

    def action():
        calls.append(1)
        return {"checked": True}

    assert distributed.on_main(action) == {"checked": True}
    assert calls == [1]


def test_on_main_reraises_the_actions_own_exception():
    error = TlcliError("run folder is in use")

    def action():
        raise error

    with pytest.raises(TlcliError) as caught:
        distributed.on_main(action)
    assert caught.value is error


def test_reduce_sums_hands_back_the_same_tensor():
    values = torch.tensor([3.0, 12.0, 4.0])
    assert distributed.reduce_sums(values) is values
    assert torch.equal(values, torch.tensor([3.0, 12.0, 4.0]))


def test_gather_objects_is_a_list_of_this_process_value():
    value = {"rank": 0, "reused": True}
    assert distributed.gather_objects(value) == [value]
    assert distributed.gather_objects(value)[0] is value


def test_wrap_and_unwrap_return_the_model_itself():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    # sync_bn on the CPU would be refused in a group; in one process nothing is converted.
    wrapped = distributed.wrap(model, torch.device("cpu"), sync_bn=True)
    assert wrapped is model
    assert isinstance(model[1], nn.BatchNorm1d)
    assert distributed.unwrap(model) is model


def test_local_device_is_the_device_asked_for():
    assert distributed.local_device(torch.device("cuda", 3)) == torch.device("cuda", 3)
    assert distributed.local_device(torch.device("cpu")) == torch.device("cpu")


def test_process_group_sets_nothing_up_outside_torchrun():
    # mps would be refused under torchrun; outside it the context does nothing at all.
    with distributed.process_group("mps"):
        assert not distributed.active()
        assert distributed.world_size() == 1


@pytest.fixture
def group_of_one(tmp_path):
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def test_inside_a_group_the_same_calls_use_the_collectives(group_of_one):
    assert distributed.active()
    values = torch.tensor([1.0, 2.0])
    summed = distributed.reduce_sums(values)
    assert summed is not values and torch.equal(summed, values)
    model = nn.Linear(2, 2)
    wrapped = distributed.wrap(model, torch.device("cpu"), sync_bn=False)
    assert isinstance(wrapped, nn.parallel.DistributedDataParallel)
    assert distributed.unwrap(wrapped) is model
    with pytest.raises(TlcliError, match="--sync-bn needs CUDA"):
        distributed.wrap(model, torch.device("cpu"), sync_bn=True)
    # Nothing to train: no gradients to average, so no wrapper.
    frozen = nn.Linear(2, 2).requires_grad_(False)
    assert distributed.wrap(frozen, torch.device("cpu"), sync_bn=False) is frozen
    assert distributed.on_main(lambda: 7) == 7
