"""The replica set's choice and draining, and the autoscaler's decisions (no server)."""

from __future__ import annotations

import asyncio

import pytest
from fake_engine import ScriptedEngine

from appliance.deployments.autoscaler import Autoscaler, Load
from appliance.deployments.spec import Scaling
from backends.base import EngineStatus, EngineUnavailable, SamplingParams
from backends.replicas import Replica, ReplicaSet


async def started(count: int) -> ReplicaSet[ScriptedEngine]:
    replicas: ReplicaSet[ScriptedEngine] = ReplicaSet("m")
    for slot in range(count):
        engine = ScriptedEngine(["a", "b", "c"])
        await engine.start()
        replicas.add(Replica(f"m-{slot}", slot, engine))
    return replicas


async def test_a_lease_goes_to_the_ready_replica_with_the_fewest_in_flight() -> None:
    replicas = await started(3)
    first, second, third = (replicas.lease() for _ in range(3))
    assert {first.id, second.id, third.id} == {"m-0", "m-1", "m-2"}
    second.release()
    assert replicas.lease().id == second.id
    await replicas.replicas[0].engine.stop()  # m-0 is no longer ready
    first.release()
    assert replicas.lease().id != "m-0"
    assert replicas.status is EngineStatus.READY


async def test_with_no_ready_replica_the_held_status_is_reported() -> None:
    replicas: ReplicaSet[ScriptedEngine] = ReplicaSet("m")
    replicas.hold(EngineStatus.FAILED, "no file")
    assert replicas.status is EngineStatus.FAILED and replicas.stats().error == "no file"
    with pytest.raises(EngineUnavailable):
        replicas.lease()


async def test_drain_waits_for_the_last_request_then_stops_the_engine() -> None:
    replicas = await started(2)
    lease = replicas.lease()
    victim = lease.replica
    deltas = lease.engine.generate(lease.engine.render_text("hi"), SamplingParams(max_tokens=3))
    draining = asyncio.create_task(replicas.drain(victim))
    await asyncio.sleep(0.01)
    assert not draining.done() and victim.retired
    assert all(replicas.lease().replica is not victim for _ in range(3))
    text = "".join([d.text async for d in deltas])
    assert text == "abc"
    lease.release()
    await asyncio.wait_for(draining, 5)
    assert victim.engine.status is EngineStatus.STOPPED and victim not in replicas.replicas


SCALING = Scaling(
    replicas=1, auto=True, min_replicas=1, max_replicas=3, cooldown_seconds=10, target_queue=2
)


def test_the_autoscaler_adds_under_a_queue_and_waits_out_the_cool_down() -> None:
    scaler = Autoscaler()
    assert scaler.decide(SCALING, Load(1, 4, 1, 4), now=100) == 1  # a short queue
    assert scaler.decide(SCALING, Load(1, 4, 2, 4), now=100) == 2  # 2 waiting per replica
    assert scaler.decide(SCALING, Load(2, 8, 9, 4), now=105) == 2  # cooling down
    assert scaler.decide(SCALING, Load(2, 8, 9, 4), now=110) == 3
    assert scaler.decide(SCALING, Load(3, 12, 50, 4), now=200) == 3  # at maxReplicas


def test_the_autoscaler_removes_one_after_a_whole_lull_never_below_the_minimum() -> None:
    scaler = Autoscaler(last_change=0)
    assert scaler.decide(SCALING, Load(3, 5, 0, 4), now=100) == 3  # two could carry 5
    assert scaler.decide(SCALING, Load(3, 5, 0, 4), now=105) == 3  # not for long enough
    assert scaler.decide(SCALING, Load(3, 9, 0, 4), now=106) == 3  # busy again: lull resets
    assert scaler.decide(SCALING, Load(3, 1, 0, 4), now=107) == 3
    assert scaler.decide(SCALING, Load(3, 1, 0, 4), now=117) == 2
    assert scaler.decide(SCALING, Load(2, 0, 0, 4), now=120) == 2
    assert scaler.decide(SCALING, Load(2, 0, 0, 4), now=129) == 2  # lull from 120
    assert scaler.decide(SCALING, Load(2, 0, 0, 4), now=130) == 1
    assert scaler.decide(SCALING, Load(1, 0, 0, 4), now=500) == 1


def test_a_fixed_deployment_is_never_scaled() -> None:
    fixed = Scaling(replicas=2)
    assert Autoscaler().decide(fixed, Load(2, 0, 100, 1), now=1000) == 2
