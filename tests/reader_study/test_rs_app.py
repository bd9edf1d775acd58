"""The rating server through starlette's TestClient, and a real uvicorn killed with SIGKILL."""
from __future__ import annotations

import json
import signal
import sqlite3

import httpx
import pytest
from starlette.testclient import TestClient

from rs_helpers import SMALL, free_port, start_server

from reader_study.app import create_app
from reader_study.build import build_study
from reader_study.store import add_reader


@pytest.fixture(scope="module")
def study(sources, tmp_path_factory):
    real, synthetic = sources
    return build_study(real, synthetic, tmp_path_factory.mktemp("app") / "study", seed=11, settings=SMALL)


@pytest.fixture(scope="module")
def pair_study(sources, tmp_path_factory):
    real, synthetic = sources
    return build_study(real, synthetic, tmp_path_factory.mktemp("app2") / "pairs", design="2afc", seed=12,
                       settings=SMALL)


def _client(app, token=None) -> TestClient:
    client = TestClient(app)
    if token is not None:
        assert client.post("/api/login", json={"token": token}).status_code == 200
    return client


def test_tokens_required_and_wrong_token_refused(study):
    token = add_reader(study, "tok-reader")
    app = create_app(study)
    anonymous = TestClient(app)
    assert anonymous.get("/").status_code == 200  # the sign-in page itself is public
    for path in ("/api/me", "/api/next", "/api/admin/progress"):
        assert anonymous.get(path).status_code == 401
    assert anonymous.post("/api/ratings", json={}).status_code == 401
    reader_id = token.split(".")[0]
    for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), f"{reader_id}.", "999.abc", "garbage", ""):
        assert anonymous.post("/api/login", json={"token": wrong}).status_code == 401
        assert anonymous.get("/api/next", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    # The right token works by cookie and by header.
    assert _client(app, token).get("/api/next").status_code == 200
    assert anonymous.get("/api/next", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # Only a hash of the secret is stored.
    with sqlite3.connect(study / "ratings.sqlite") as db:
        stored = [row[0] for row in db.execute("SELECT token_sha256 FROM readers")]
    assert token.split(".", 1)[1] not in stored and all(len(s) == 64 for s in stored)


def test_no_path_traversal_and_key_never_served(study):
    token = add_reader(study, "trav-reader")
    app = create_app(study)
    client = _client(app, token)
    item = client.get("/api/next").json()["item"]["item_id"]
    assert client.get(f"/api/image/{item}/a/axial/0").status_code == 200
    key_text = (study / "key" / "answer_key.json").read_text()
    attempts = [
        "/static/../key/answer_key.json", "/static/..%2fkey%2fanswer_key.json", "/static/%2e%2e/study.json",
        "/static/study.json", "/static/index.html/../../key/answer_key.json", "/key/answer_key.json",
        "/study.json", "/ratings.sqlite", "/items/" + item + "/a/axial_000.png",
        "/api/image/..%2f..%2fkey/a/axial/0", f"/api/image/{item}/..%2f..%2f..%2fkey/axial/0",
        f"/api/image/{item}/a/..%2f..%2fstudy/0", f"/api/image/{item}/a/axial/-1", f"/api/image/{item}/a/axial/999",
        f"/api/image/{item}/b/axial/0", f"/api/image/{item.upper()}/a/axial/0", "/api/image/0000000000000000/a/axial/0",
        f"/api/image/{item}/a/axial/0%2f..%2f..%2f..%2fkey%2fanswer_key.json",
    ]
    for path in attempts:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "synthetic" not in response.text and key_text[:200] not in response.text
    # Nothing the reader can reach mentions the truth.
    for path in ("/", "/admin", "/static/app.js", "/api/me", "/api/next"):
        body = client.get(path).text
        assert '"kind"' not in body and "answer_key" not in body and "_tumor" not in body
    png = client.get(f"/api/image/{item}/a/axial/1")
    assert png.headers["content-type"] == "image/png"
    assert "content-disposition" not in png.headers and "last-modified" not in png.headers


def test_rating_is_idempotent_and_validated(study):
    token = add_reader(study, "idem-reader")
    client = _client(create_app(study), token)
    first = client.get("/api/next").json()
    item = first["item"]["item_id"]
    assert client.post("/api/ratings", json={"item_id": item, "answer": "maybe", "confidence": 3}).status_code == 422
    assert client.post("/api/ratings", json={"item_id": item, "answer": "real", "confidence": 6}).status_code == 422
    assert client.post("/api/ratings", json={"item_id": item, "answer": "real", "confidence": True}).status_code == 422
    assert client.post("/api/ratings", json={"item_id": "f" * 16, "answer": "real", "confidence": 3}).status_code == 404
    assert client.post("/api/ratings", content=b"answer=real", headers={"content-type": "text/plain"}).status_code == 415
    one = client.post("/api/ratings", json={"item_id": item, "answer": "synthetic", "confidence": 4, "seconds": 3.5})
    assert one.status_code == 201 and one.json()["stored"] is True
    # The same submission again (a double click, a retry after a lost reply), or a changed one: first wins.
    for again in ({"answer": "synthetic", "confidence": 4}, {"answer": "real", "confidence": 1}):
        response = client.post("/api/ratings", json={"item_id": item, **again, "seconds": 9.0})
        assert response.status_code == 200 and response.json()["duplicate"] is True
        assert response.json()["rating"] == {"item_id": item, "answer": "synthetic", "confidence": 4,
                                             "practice": False}
    with sqlite3.connect(study / "ratings.sqlite") as db:
        rows = db.execute("SELECT answer, confidence, client_seconds, server_seconds FROM ratings r JOIN readers USING "
                          "(reader_id) WHERE name = 'idem-reader'").fetchall()
    assert len(rows) == 1 and rows[0][:3] == ("synthetic", 4, 3.5) and rows[0][3] >= 0
    after = client.get("/api/next").json()
    assert after["rated"] == 1 and after["item"]["item_id"] != item


def test_own_order_resume_and_privacy(study):
    tokens = [add_reader(study, f"order-{i}") for i in range(3)]
    app = create_app(study)
    clients = [_client(app, t) for t in tokens]
    orders = []
    for client in clients:
        seen = []
        for _ in range(3):
            item = client.get("/api/next").json()["item"]["item_id"]
            seen.append(item)
            client.post("/api/ratings", json={"item_id": item, "answer": "real", "confidence": 2})
        orders.append(seen)
    assert len({tuple(o) for o in orders}) > 1  # readers do not share one order
    # Resume: a fresh session with the same token continues where the reader stopped.
    again = _client(create_app(study), tokens[0]).get("/api/next").json()
    assert again["rated"] == 3 and again["item"]["item_id"] not in orders[0]
    # Another reader's progress is their own; no route lists anyone else's ratings.
    assert clients[1].get("/api/me").json()["rated"] == 3
    assert clients[1].get("/api/admin/progress").status_code == 403


def test_admin_sees_progress_only(study):
    admin = add_reader(study, "the-admin", admin=True)
    reader = add_reader(study, "watched")
    app = create_app(study)
    client = _client(app, admin)
    data = client.get("/api/admin/progress").json()
    names = [r["reader"] for r in data["readers"]]
    assert "watched" in names and "the-admin" not in names
    assert "answer" not in json.dumps(data)
    assert client.get("/api/next").status_code == 403  # an admin rates nothing
    assert _client(app, reader).get("/api/admin/progress").status_code == 403
    with pytest.raises(Exception, match="exists already"):
        add_reader(study, "watched")


def test_2afc_answers(pair_study):
    token = add_reader(pair_study, "pair-reader")
    client = _client(create_app(pair_study), token)
    item = client.get("/api/next").json()["item"]
    assert item["panels"] == ["a", "b"]
    assert client.get(f"/api/image/{item['item_id']}/b/axial/0").status_code == 200
    assert client.post("/api/ratings", json={"item_id": item["item_id"], "answer": "real",
                                             "confidence": 3}).status_code == 422
    assert client.post("/api/ratings", json={"item_id": item["item_id"], "answer": "b",
                                             "confidence": 3}).status_code == 201


def test_ratings_survive_sigkill(study):
    token = add_reader(study, "killed-reader")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(study, port)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        item = httpx.get(f"{url}/api/next", headers=headers).json()["item"]["item_id"]
        reply = httpx.post(f"{url}/api/ratings", headers=headers,
                           json={"item_id": item, "answer": "synthetic", "confidence": 5, "seconds": 1.0})
        assert reply.status_code == 201
    finally:
        server.send_signal(signal.SIGKILL)  # no shutdown hook runs: only what was committed survives
        server.wait(timeout=10)
    assert server.returncode == -signal.SIGKILL
    server = start_server(study, port)
    try:
        state = httpx.get(f"{url}/api/next", headers=headers).json()
        assert state["rated"] == 1 and state["item"]["item_id"] != item
        again = httpx.post(f"{url}/api/ratings", headers=headers, json={"item_id": item, "answer": "real",
                                                                        "confidence": 1})
        assert again.status_code == 200 and again.json()["rating"]["answer"] == "synthetic"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    with sqlite3.connect(study / "ratings.sqlite") as db:
        rows = db.execute("SELECT item_id, answer FROM ratings JOIN readers USING (reader_id) "
                          "WHERE name = 'killed-reader'").fetchall()
    assert rows == [(item, "synthetic")]


def test_cli_add_reader_prints_a_working_token(study, capsys):
    from tumorsyn.cli.main import main

    assert main(["reader-study", "add-reader", str(study), "--name", "cli-reader", "--port", "9999"]) == 0
    out = capsys.readouterr().out
    token = out.splitlines()[0].rsplit(" ", 1)[1]
    assert f"http://127.0.0.1:9999/#token={token}" in out
    assert _client(create_app(study), token).get("/api/me").json()["name"] == "cli-reader"
    # The same name twice is a one-line error, exit 1.
    assert main(["reader-study", "add-reader", str(study), "--name", "cli-reader"]) == 1
    assert "exists already" in capsys.readouterr().err
    # A folder that is not a study.
    assert main(["reader-study", "add-reader", str(study / "items"), "--name", "x"]) == 1
    assert "no study.json" in capsys.readouterr().err


def test_not_visible_comment_and_reading_record(study):
    token = add_reader(study, "record-reader")
    client = _client(create_app(study), token)
    me = client.get("/api/me").json()
    assert me["display"]["encoding"] == "png16" and me["display"]["window_presets"]["liver"] == [150.0, 90.0]
    state = client.get("/api/next").json()
    item = state["item"]
    # The page opens on the lesion's slice and draws its marker box; nothing says what the case is.
    assert 0 <= item["lesion_slice"]["a"]["axial"] < SMALL.n_slices and len(item["marker"]["a"]["axial"]) == 4
    assert state["practice"] == {"done": 0, "total": 0} and item["practice"] is False and "truth" not in item
    post = lambda **body: client.post("/api/ratings", json={"item_id": item["item_id"], **body})  # noqa: E731
    bad = [({"answer": "not_visible", "confidence": 3}, "takes no confidence"),
           ({"answer": "real", "confidence": None}, "confidence must be"),
           ({"answer": "real", "confidence": 2, "comment": 5}, "comment must be text"),
           ({"answer": "real", "confidence": 2, "comment": "x" * 2001}, "at most 2000 characters"),
           ({"answer": "real", "confidence": 2, "window_width": 0}, "window_width must be a number > 0"),
           ({"answer": "real", "confidence": 2, "window_level": "40"}, "window_level must be a number"),
           ({"answer": "real", "confidence": 2, "zoom": float("inf")}, "zoom must be a number"),
           ({"answer": "real", "confidence": 2, "slices_visited": 2.5}, "slices_visited must be a whole number"),
           ({"answer": "real", "confidence": 2, "slices_visited": -1}, "slices_visited must be a whole number >= 0")]
    for body, message in bad:
        response = client.post("/api/ratings", content=json.dumps({"item_id": item["item_id"], **body})
                               .replace("Infinity", "1e999"), headers={"content-type": "application/json"})
        assert response.status_code == 422 and message in response.json()["error"], (body, response.text)
    reply = post(answer="not_visible", confidence=None, seconds=12.5, comment="  too small to say  ",
                 slices_visited=7, window_width=150, window_level=90.5, zoom=2.25)
    assert reply.status_code == 201
    assert reply.json()["rating"] == {"item_id": item["item_id"], "answer": "not_visible", "confidence": None,
                                      "practice": False}
    with sqlite3.connect(study / "ratings.sqlite") as db:
        row = db.execute("SELECT answer, confidence, comment, slices_visited, window_width, window_level, zoom, "
                         "client_seconds FROM ratings JOIN readers USING (reader_id) WHERE name = 'record-reader'"
                         ).fetchone()
    assert row == ("not_visible", None, "too small to say", 7, 150.0, 90.5, 2.25, 12.5)


def test_practice_items_come_first_and_reply_with_their_truth(sources, tmp_path):
    real, synthetic = sources
    study = build_study(real, synthetic, tmp_path / "practice", seed=13, settings=SMALL)
    data = json.loads((study / "study.json").read_text())
    key = json.loads((study / "key" / "answer_key.json").read_text())
    practice = data["items"][:2]
    for item in practice:  # as `build --practice` writes them
        item["practice"], item["truth"] = True, key["items"][item["id"]]["kind"]
    (study / "study.json").write_text(json.dumps(data))
    token = add_reader(study, "trainee")
    app = create_app(study)
    client = _client(app, token)
    for position, expected in enumerate(practice):
        state = client.get("/api/next").json()
        assert state["item"]["item_id"] == expected["id"] and state["item"]["practice"] is True
        assert "truth" not in json.dumps(state)  # only the reply to an answer tells
        assert state["practice"] == {"done": position, "total": 2} and (state["rated"], state["total"]) == (0, 6)
        assert client.get(f"/api/image/{expected['id']}/a/axial/0").status_code == 200
        wrong = "real" if expected["truth"] == "synthetic" else "synthetic"
        reply = client.post("/api/ratings", json={"item_id": expected["id"], "answer": wrong, "confidence": 2})
        assert reply.status_code == 201
        assert reply.json()["rating"]["truth"] == expected["truth"] and reply.json()["rating"]["practice"] is True
    state = client.get("/api/next").json()
    assert state["item"]["practice"] is False and state["practice"] == {"done": 2, "total": 2}
    assert state["item"]["item_id"] not in {item["id"] for item in practice}
    # Practice answers stay out of the scored ratings (and so out of the analysis).
    store = app.state.store
    assert store.ratings() == [] and len(store.practice_ratings()) == 2
    assert store.progress(store.authenticate(token)["reader_id"]) == (0, 6)


# The schema of the first release: confidence NOT NULL, none of the reading-record columns.
_OLD_SCHEMA = """
CREATE TABLE items (item_id TEXT PRIMARY KEY, position INTEGER NOT NULL, panels TEXT NOT NULL, views TEXT NOT NULL);
CREATE TABLE readers (reader_id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('reader', 'admin')), token_sha256 TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE assignments (reader_id INTEGER NOT NULL REFERENCES readers(reader_id), position INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES items(item_id), first_shown REAL,
    PRIMARY KEY (reader_id, position), UNIQUE (reader_id, item_id));
CREATE TABLE ratings (reader_id INTEGER NOT NULL REFERENCES readers(reader_id),
    item_id TEXT NOT NULL REFERENCES items(item_id), answer TEXT NOT NULL,
    confidence INTEGER NOT NULL CHECK (confidence BETWEEN 1 AND 5), client_seconds REAL, server_seconds REAL,
    created REAL NOT NULL, PRIMARY KEY (reader_id, item_id));
"""


def test_database_of_an_older_version_is_migrated(sources, tmp_path):
    real, synthetic = sources
    study = build_study(real, synthetic, tmp_path / "old", seed=14, settings=SMALL)
    items = [item["id"] for item in json.loads((study / "study.json").read_text())["items"]]
    with sqlite3.connect(study / "ratings.sqlite") as db:
        db.executescript(_OLD_SCHEMA)
        db.executemany("INSERT INTO items VALUES (?, ?, '[\"a\"]', ?)",
                       [(item, i, json.dumps({"axial": SMALL.n_slices})) for i, item in enumerate(items)])
        db.execute("INSERT INTO readers VALUES (1, 'old', 'reader', ?, 0)", ("0" * 64,))
        db.executemany("INSERT INTO assignments VALUES (1, ?, ?, NULL)", list(enumerate(items)))
        db.execute("INSERT INTO ratings VALUES (1, ?, 'real', 3, 4.5, 5.0, 1.0)", (items[0],))
    token = add_reader(study, "new")  # opens (and migrates) the database
    client = _client(create_app(study), token)
    item = client.get("/api/next").json()["item"]["item_id"]
    assert client.post("/api/ratings", json={"item_id": item, "answer": "not_visible", "confidence": None,
                                             "zoom": 1.5}).status_code == 201
    with sqlite3.connect(study / "ratings.sqlite") as db:
        rows = db.execute("SELECT reader_id, answer, confidence, client_seconds, zoom FROM ratings "
                          "ORDER BY reader_id").fetchall()
    assert rows == [(1, "real", 3, 4.5, None), (2, "not_visible", None, None, 1.5)]


def test_study_built_before_the_display_settings_still_serves(sources, tmp_path):
    real, synthetic = sources
    study = build_study(real, synthetic, tmp_path / "legacy", seed=15, settings=SMALL)
    data = json.loads((study / "study.json").read_text())
    for name in ("display", "practice_items", "grid"):
        data.pop(name, None)
    for item in data["items"]:
        for name in ("lesion_slice", "marker", "practice"):
            item.pop(name, None)
    (study / "study.json").write_text(json.dumps(data))
    token = add_reader(study, "legacy-reader")
    client = _client(create_app(study), token)
    display = client.get("/api/me").json()["display"]
    # Its PNGs were windowed at build time: the page shows them as they are, at the window they were made with.
    assert display["encoding"] == "png8" and display["default_window"] == [400.0, 40.0]
    assert display["marker"] == "off" and display["window_presets"] == {}
    item = client.get("/api/next").json()["item"]
    assert "lesion_slice" not in item and "marker" not in item and item["practice"] is False
    assert client.post("/api/ratings", json={"item_id": item["item_id"], "answer": "real",
                                             "confidence": 3}).status_code == 201
