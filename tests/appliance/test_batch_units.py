"""The rules behind batches, without a server: spare capacity, the batch price, reading
an input file."""

from __future__ import annotations

import dataclasses
import json
import pathlib

from fake_engine import ScriptedEngine

from appliance.accounting.money import UnitPrices
from appliance.batches.validation import read_input
from appliance.config.schema import BatchPricing, Pricing
from backends.replicas import Replica, ReplicaSet


async def replica_set(parallel: list[int]) -> ReplicaSet[ScriptedEngine]:
    replicas: ReplicaSet[ScriptedEngine] = ReplicaSet("m")
    for slot, slots in enumerate(parallel):
        engine = ScriptedEngine(["a"])
        engine.capabilities = dataclasses.replace(engine.capabilities, parallel=slots)
        await engine.start()
        replicas.add(Replica(f"m-{slot}", slot, engine))
    return replicas


async def test_a_batch_line_never_takes_the_last_free_slot() -> None:
    replicas = await replica_set([2, 2])  # four slots
    batch = [replicas.spare_lease() for _ in range(4)]
    assert [lease is not None for lease in batch] == [True, True, True, False]
    interactive = replicas.lease()  # the slot kept free
    assert sum(r.in_flight for r in replicas.replicas) == 4
    assert replicas.spare_lease() is None
    interactive.release()
    assert replicas.interactive_peak() == 1
    assert replicas.spare_lease() is None  # three in flight of four: two must stay free
    for lease in batch[:2]:
        assert lease is not None
        lease.release()
    assert replicas.spare_lease() is not None  # one in flight of four


async def test_batch_lines_leave_as_many_slots_as_interactive_traffic_recently_needed() -> None:
    replicas = await replica_set([4])
    interactive = [replicas.lease(), replicas.lease()]  # two at once
    for lease in interactive:
        lease.release()
    assert replicas.interactive_peak() == 2
    batch = [replicas.spare_lease() for _ in range(2)]
    assert [lease is not None for lease in batch] == [True, False]  # the peak plus one free
    again = [replicas.lease(), replicas.lease()]  # both fit beside the batch line
    assert replicas.replicas[0].in_flight == 3 and replicas.replicas[0].background == 1
    for lease in again + batch:
        if lease is not None:
            lease.release()
    assert replicas.replicas[0].in_flight == 0 and replicas.replicas[0].background == 0


async def test_one_slot_is_lent_only_while_idle() -> None:
    replicas = await replica_set([1])
    lease = replicas.lease()
    assert replicas.spare_lease() is None
    lease.release()
    assert replicas.spare_lease() is not None


async def test_no_ready_replica_lends_nothing() -> None:
    replicas: ReplicaSet[ScriptedEngine] = ReplicaSet("m")
    assert replicas.spare_lease() is None


def test_batch_lines_pay_the_batch_price_or_the_normal_one() -> None:
    plain = Pricing(prompt="0.10", completion="0.40")
    assert UnitPrices.of(plain, batch=True) == UnitPrices("0.10", "0.40")
    priced = Pricing(prompt="0.10", completion="0.40", batch=BatchPricing(prompt="0.05"))
    assert UnitPrices.of(priced, batch=True) == UnitPrices("0.05", "0")
    assert UnitPrices.of(priced) == UnitPrices("0.10", "0.40")


def test_reading_an_input_file_names_each_bad_line(tmp_path: pathlib.Path) -> None:
    good = {"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m"}}
    rows = [
        json.dumps(good),
        "",
        "[1, 2]",
        json.dumps({**good, "custom_id": "b", "method": "GET"}),
        json.dumps({**good, "custom_id": "c", "body": {"model": "m", "stream": True}}),
        json.dumps({**good, "custom_id": ""}),
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(rows) + "\n")
    read = read_input(path, "/v1/embeddings")
    assert not read.errors
    by_line = {line.line: line for line in read.lines}
    assert sorted(by_line) == [1, 3, 4, 5, 6]  # the blank line 2 is skipped
    assert by_line[1].outcome is None and by_line[1].model == "m"
    codes = {n: json.loads(by_line[n].result or b"{}")["error"]["code"] for n in (3, 4, 5, 6)}
    assert codes == {
        3: "invalid_json",
        4: "invalid_method",
        5: "invalid_body",
        6: "missing_custom_id",
    }


def test_an_empty_file_fails_the_batch(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    [error] = read_input(path, "/v1/completions").errors
    assert error.code == "empty_file"
