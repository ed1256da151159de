"""A small Flask app whose view sends a command through SyncCommandBus, under several
threads at once (as a threaded WSGI server would run it)."""

from __future__ import annotations

import threading
import uuid

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from commandbus_sync import SyncCommandBus


def make_app(bus: SyncCommandBus) -> Flask:
    app = Flask(__name__)

    @app.post("/orders")
    def create_order() -> ResponseReturnValue:
        command_id = uuid.uuid4()
        bus.send("orders", "PlaceOrder", command_id, request.get_json())
        return jsonify(command_id=str(command_id)), 202

    return app


def test_views_send_commands_from_many_threads(sync_bus: SyncCommandBus) -> None:
    app = make_app(sync_bus)
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client_thread(n: int) -> None:
        try:
            with app.test_client() as client:
                for i in range(10):
                    response = client.post("/orders", json={"thread": n, "i": i})
                    assert response.status_code == 202
                    with lock:
                        ids.append(response.get_json()["command_id"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(set(ids)) == 60
    stored = sync_bus.query_commands(domain="orders", limit=100)
    assert {str(m.command_id) for m in stored} == set(ids)
