from __future__ import annotations

from tests.support import Gateway


def test_demo_flow_one(sqlite_gateway: Gateway) -> None:
    gw = sqlite_gateway
    answer = gw.post_message("tenant-1", "demo-1", {"to": "+10000000001", "body": "hello"})
    assert answer.status == 202, answer.body
    message_id = answer.body["message_id"]
    gw.run_until_idle()
    status = gw.get_message("tenant-1", message_id)
    assert status.body["status"] == "sent", status.body
    assert status.body["attempts"] == 2
