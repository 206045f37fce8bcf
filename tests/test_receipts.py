"""Receipts are typed inside (pipeline.receipt.Receipt) and keep the JSON of docs/json.md."""

from __future__ import annotations

import json

from fleet_fixtures import edit, run

from reconciler.pipeline.outcome import Failure, Refusal
from reconciler.pipeline.run import Options, apply
from reconciler.targets import lock
from reconciler.targets.local import LocalTarget


def last_receipt(fleet) -> dict:
    return json.loads((fleet / ".provctl" / "receipts.jsonl").read_text().splitlines()[-1])


def test_the_receipt_json_is_the_documented_shape(fleet):
    result = apply(Options(repo=fleet))
    assert result.exit_code == 2 and result.receipt is not None
    body = last_receipt(fleet)
    assert body == result.receipt.to_dict()
    assert set(body) == {"id", "revision", "trigger", "plan_checksum", "started", "ended",
                         "summary", "targets", "redirects", "rollouts"}
    assert body["rollouts"] == []  # no rollout in the test fleet
    assert body["summary"] == {**result.plan.counts()}
    assert set(body["targets"]) == {"local"}
    assert set(body["targets"]["local"]) == {"error", "summary", "items"}
    assert body["targets"]["local"]["error"] is None
    n = len(body["targets"]["local"]["items"])  # the changed paths, summed up
    assert body["targets"]["local"]["summary"] == {"put": n, "delete": 0, "failed": 0,
                                                   "unchanged": 0}
    item = body["targets"]["local"]["items"][0]
    assert set(item) == {"target", "path", "action", "reason", "error", "sha256", "size"}
    assert item["action"] == "put" and len(item["sha256"]) == 64 and item["size"] > 0
    assert body["redirects"] == [{"action": "register", "mac": "001565aabb01",
                                  "service": "default", "cause": "new",
                                  "url": body["redirects"][0]["url"], "error": None}]
    assert body["redirects"][0]["url"].endswith("…/")  # token shortened
    copies = list((fleet / "out" / ".provctl-www" / "receipts").glob("*.json"))
    assert [json.loads(p.read_text()) for p in copies] == [body]


def test_a_refusal_is_a_type_not_a_prefix_to_parse(fleet):
    assert run(fleet, "apply") == 2
    holder = lock.acquire(LocalTarget("local", fleet / "out" / "www"), "ops", 600).info
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    result = apply(Options(repo=fleet))
    error = result.results["local"].error
    assert isinstance(error, Refusal) and result.exit_code == 3
    assert str(error).startswith(f"refused: target local: lock {holder.id} held by ops")
    status = json.loads((fleet / ".provctl" / "status.json").read_text())
    assert status["local"]["last_attempted"]["error"] == str(error)
    assert not isinstance(Failure("x"), Refusal) and str(Failure("x")) == "x"
