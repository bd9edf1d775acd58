"""The study's SQLite database: items, readers (hashed tokens), each reader's order, and ratings.

``STUDY/ratings.sqlite`` runs in WAL mode with ``synchronous=FULL``: a rating is committed (and on
disk) before the server answers, so a killed server loses nothing it acknowledged. The answer key is
not in the database; nothing here knows which scored case is synthetic (practice items carry their
truth in study.json, for the page's feedback).

A rating holds the answer (``not_visible`` when the reader cannot see or judge the lesion: then no
confidence), a confidence 1-5, an optional comment, and how the case was read: seconds on screen,
distinct slices visited, the final window and zoom. Practice answers go to ``practice_ratings`` (same
columns), which the analysis ignores. A database made by an older version gets the new columns on
opening (``ALTER TABLE ... ADD COLUMN``; old ratings hold NULL there).

A token is ``<reader id>.<secret>``; only the SHA-256 of the secret is stored, and it is checked
with :func:`secrets.compare_digest`.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from tumorsyn.errors import ConfigError, InputError

__all__ = ["DB_NAME", "Store", "load_study", "add_reader", "ANSWERS", "NOT_VISIBLE", "RATING_EXTRAS"]

DB_NAME = "ratings.sqlite"
NOT_VISIBLE = "not_visible"
ANSWERS = {"single": ("real", "synthetic", NOT_VISIBLE), "2afc": ("a", "b", NOT_VISIBLE)}
# How the case was read, stored beside each answer (all nullable; added to older databases on opening).
RATING_EXTRAS = {"comment": "TEXT", "slices_visited": "INTEGER", "window_width": "REAL", "window_level": "REAL",
                 "zoom": "REAL"}
_RATING_COLUMNS = ("reader_id", "item_id", "answer", "confidence", "client_seconds", "server_seconds", "created",
                   *RATING_EXTRAS)


def _ratings_table(name: str) -> str:
    # Confidence is NULL exactly when the answer is "not visible".
    return f"""
CREATE TABLE IF NOT EXISTS {name} (
    reader_id INTEGER NOT NULL REFERENCES readers(reader_id), item_id TEXT NOT NULL REFERENCES items(item_id),
    answer TEXT NOT NULL, confidence INTEGER CHECK (confidence BETWEEN 1 AND 5),
    client_seconds REAL, server_seconds REAL, created REAL NOT NULL,
    {", ".join(f"{column} {kind}" for column, kind in RATING_EXTRAS.items())},
    CHECK ((answer = '{NOT_VISIBLE}') = (confidence IS NULL)),
    PRIMARY KEY (reader_id, item_id));
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY, position INTEGER NOT NULL, panels TEXT NOT NULL, views TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS readers (
    reader_id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL CHECK (role IN ('reader', 'admin')),
    token_sha256 TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    reader_id INTEGER NOT NULL REFERENCES readers(reader_id), position INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES items(item_id), first_shown REAL,
    PRIMARY KEY (reader_id, position), UNIQUE (reader_id, item_id));
""" + _ratings_table("ratings") + _ratings_table("practice_ratings")


def load_study(study: str | Path) -> dict:
    """Read and check ``STUDY/study.json`` (the public part of a study)."""
    path = Path(study) / "study.json"
    if not path.exists():
        raise InputError("no study.json here; build a study first with `tumorsyn reader-study build`", path=study)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the study description ({exc})", path=path) from None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("tumorsyn-reader-study/"):
        raise InputError("not a tumorsyn reader-study description", path=path)
    return data


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Store:
    """Thread-safe access to one study's database (one connection, one lock: SQLite writes serialise anyway).

    Parameters
    ----------
    study : path
        Study folder; the database is created on first use and its items synced from study.json.
    """

    def __init__(self, study: str | Path) -> None:
        self.study_dir = Path(study)
        self.study = load_study(self.study_dir)
        self.design = self.study["design"]
        self.path = self.study_dir / DB_NAME
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._migrate()
            self._sync_items()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"cannot open the ratings database ({exc})", path=self.path) from None
        self.items = {row[0]: {"position": row[1], "panels": json.loads(row[2]), "views": json.loads(row[3])}
                      for row in self._db.execute("SELECT item_id, position, panels, views FROM items")}
        # What the page needs beyond the database's record: where each lesion is, whether it is practice.
        self.extras = {item["id"]: item for item in self.study["items"]}
        self.practice_ids = [item["id"] for item in self.study["items"] if item.get("practice")]
        self.display = _display(self.study)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- setup ----------------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Bring a database of an older version up to this schema, keeping every rating."""
        columns = {row[1]: row for row in self._db.execute("PRAGMA table_info(ratings)")}
        for column, kind in RATING_EXTRAS.items():
            if column not in columns:
                try:
                    self._db.execute(f"ALTER TABLE ratings ADD COLUMN {column} {kind}")
                except sqlite3.OperationalError as exc:  # another process added it a moment ago
                    if "duplicate column" not in str(exc):
                        raise
        if columns["confidence"][3]:
            # Older databases required a confidence; "not visible" answers have none. SQLite cannot drop a
            # NOT NULL constraint, so the table is copied into the new form, in one transaction.
            names = ", ".join(_RATING_COLUMNS)
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if not self._db.execute("SELECT \"notnull\" FROM pragma_table_info('ratings') "
                                            "WHERE name = 'confidence'").fetchone()[0]:
                        self._db.execute("COMMIT")  # another process migrated it meanwhile
                        return
                    self._db.execute(_ratings_table("ratings_migrated").strip())
                    self._db.execute(f"INSERT INTO ratings_migrated ({names}) SELECT {names} FROM ratings")
                    self._db.execute("DROP TABLE ratings")
                    self._db.execute("ALTER TABLE ratings_migrated RENAME TO ratings")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def _sync_items(self) -> None:
        rows = [(item["id"], position, json.dumps(item["panels"]), json.dumps(item["views"], sort_keys=True))
                for position, item in enumerate(self.study["items"])]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def add_reader(self, name: str, *, admin: bool = False) -> str:
        """Register a reader (or an admin) and return their token; the token is shown only now."""
        name = name.strip()
        if not name or len(name) > 100:
            raise ConfigError("a reader name must have 1 to 100 characters")
        secret = secrets.token_urlsafe(24)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                try:
                    cursor = self._db.execute(
                        "INSERT INTO readers (name, role, token_sha256, created) VALUES (?, ?, ?, ?)",
                        (name, "admin" if admin else "reader", _hash(secret), time.time()))
                except sqlite3.IntegrityError:
                    raise ConfigError(f"a reader named {name!r} exists already; choose another name",
                                      path=self.path) from None
                reader_id = int(cursor.lastrowid)
                if not admin:
                    # Each reader's own order: from the study seed and the reader's number, so it is replayable.
                    # Practice items come first for everyone, in the study's order, and are not assigned.
                    ids = [item["id"] for item in self.study["items"] if not item.get("practice")]
                    order = np.random.default_rng([int(self.study["seed"]), reader_id]).permutation(len(ids))
                    self._db.executemany("INSERT INTO assignments (reader_id, position, item_id) VALUES (?, ?, ?)",
                                         [(reader_id, pos, ids[int(i)]) for pos, i in enumerate(order)])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return f"{reader_id}.{secret}"

    # --- sign-in --------------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> dict | None:
        """The reader a token belongs to (``{'reader_id', 'name', 'role'}``), or None."""
        if not token or "." not in token or len(token) > 200:
            return None
        number, secret = token.split(".", 1)
        if not number.isdigit():
            return None
        with self._lock:
            row = self._db.execute("SELECT reader_id, name, role, token_sha256 FROM readers WHERE reader_id = ?",
                                   (int(number),)).fetchone()
        # Compare digests even for an unknown reader so that timing does not tell which ids exist.
        stored = row[3] if row else "0" * 64
        if not secrets.compare_digest(stored, _hash(secret)) or row is None:
            return None
        return {"reader_id": row[0], "name": row[1], "role": row[2]}

    # --- reading --------------------------------------------------------------------------------
    def progress(self, reader_id: int) -> tuple[int, int]:
        """(rated, total) for one reader."""
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM assignments WHERE reader_id = ?", (reader_id,)).fetchone()[0]
            done = self._db.execute("SELECT COUNT(*) FROM ratings WHERE reader_id = ?", (reader_id,)).fetchone()[0]
        return int(done), int(total)

    def practice_progress(self, reader_id: int) -> tuple[int, int]:
        """(answered, total) practice items for one reader."""
        with self._lock:
            done = self._db.execute("SELECT COUNT(*) FROM practice_ratings WHERE reader_id = ?",
                                    (reader_id,)).fetchone()[0]
        return int(done), len(self.practice_ids)

    def _page_item(self, item_id: str, position: int, practice: bool) -> dict:
        item, extra = self.items[item_id], self.extras.get(item_id, {})
        data = {"item_id": item_id, "position": position, "panels": item["panels"], "views": item["views"],
                "practice": practice}
        for name in ("lesion_slice", "marker"):
            if name in extra:
                data[name] = extra[name]
        return data

    def next_item(self, reader_id: int) -> dict | None:
        """The reader's next item (marked as shown now), or None when done.

        Practice items come first, in the study's order; then the reader's first unrated scored item in
        their own order. A practice item's truth is not in the answer (it comes with the rating's reply).
        """
        if self.practice_ids:
            with self._lock:
                answered = {row[0] for row in self._db.execute(
                    "SELECT item_id FROM practice_ratings WHERE reader_id = ?", (reader_id,))}
            for position, item_id in enumerate(self.practice_ids):
                if item_id not in answered:
                    return self._page_item(item_id, position, True)
        with self._lock:
            row = self._db.execute(
                "SELECT a.position, a.item_id, a.first_shown FROM assignments a LEFT JOIN ratings r "
                "ON r.reader_id = a.reader_id AND r.item_id = a.item_id "
                "WHERE a.reader_id = ? AND r.item_id IS NULL ORDER BY a.position LIMIT 1", (reader_id,)).fetchone()
            if row is None:
                return None
            if row[2] is None:
                # Reading time starts when the case is first handed out; a resumed case keeps its start.
                self._db.execute("UPDATE assignments SET first_shown = ? WHERE reader_id = ? AND item_id = ?",
                                 (time.time(), reader_id, row[1]))
        return self._page_item(row[1], int(row[0]), False)

    def is_assigned(self, reader_id: int, item_id: str) -> bool:
        """Whether the reader may see the item: one of their scored items, or a practice item."""
        if item_id in self.practice_ids:
            return True
        with self._lock:
            return self._db.execute("SELECT 1 FROM assignments WHERE reader_id = ? AND item_id = ?",
                                    (reader_id, item_id)).fetchone() is not None

    def image_path(self, item_id: str, panel: str, view: str, index: int) -> Path | None:
        """File of one image, found from the item's database record (never from a path in a request)."""
        item = self.items.get(item_id)
        if item is None or panel not in item["panels"] or view not in item["views"]:
            return None
        if not 0 <= index < int(item["views"][view]):
            return None
        return self.study_dir / "items" / item_id / panel / f"{view}_{index:03d}.png"

    # --- rating ---------------------------------------------------------------------------------
    def save_rating(self, reader_id: int, item_id: str, answer: str, confidence: int | None,
                    client_seconds: float | None, **extras) -> tuple[bool, dict]:
        """Store a rating, committed before returning; a repeat keeps the first (idempotent).

        Parameters
        ----------
        answer : str
            One of ``ANSWERS[design]``; ``not_visible`` takes ``confidence=None``.
        confidence : int or None
            1 (guess) to 5 (certain).
        client_seconds : float or None
            Seconds the case was on screen, by the page's clock.
        **extras
            Any of ``RATING_EXTRAS``: ``comment`` (str), ``slices_visited`` (int), ``window_width`` and
            ``window_level`` (HU), ``zoom`` (1 = image fitted to its view).

        Returns
        -------
        (created, rating) : (bool, dict)
            ``created`` is False when this reader had already rated the item; ``rating`` is the stored one,
            with ``practice`` and, for a practice item, its ``truth``.
        """
        unknown = set(extras) - set(RATING_EXTRAS)
        if unknown:
            raise TypeError(f"unknown rating fields: {', '.join(sorted(unknown))}")
        practice = item_id in self.practice_ids
        table = "practice_ratings" if practice else "ratings"
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                shown = self._db.execute("SELECT first_shown FROM assignments WHERE reader_id = ? AND item_id = ?",
                                         (reader_id, item_id)).fetchone()
                server_seconds = None if shown is None or shown[0] is None else round(now - shown[0], 3)
                values = (reader_id, item_id, answer, None if confidence is None else int(confidence),
                          client_seconds, server_seconds, now, *(extras.get(c) for c in RATING_EXTRAS))
                cursor = self._db.execute(
                    f"INSERT OR IGNORE INTO {table} ({', '.join(_RATING_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_RATING_COLUMNS))})", values)
                row = self._db.execute(f"SELECT answer, confidence FROM {table} WHERE reader_id = ? AND item_id = ?",
                                       (reader_id, item_id)).fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        rating = {"item_id": item_id, "answer": row[0], "confidence": None if row[1] is None else int(row[1]),
                  "practice": practice}
        if practice:
            rating["truth"] = self.extras[item_id].get("truth")
        return cursor.rowcount == 1, rating

    # --- admin and analysis -----------------------------------------------------------------------
    def all_progress(self) -> list[dict]:
        """Per reader: name, rated, total, last rating time (no answers)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.reader_id, r.name, "
                "(SELECT COUNT(*) FROM assignments a WHERE a.reader_id = r.reader_id), "
                "(SELECT COUNT(*) FROM ratings t WHERE t.reader_id = r.reader_id), "
                "(SELECT MAX(created) FROM ratings t WHERE t.reader_id = r.reader_id) "
                "FROM readers r WHERE r.role = 'reader' ORDER BY r.reader_id").fetchall()
        return [{"reader": name, "rated": done, "total": total,
                 "last_rating": None if last is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last))}
                for _, name, total, done, last in rows]

    def ratings(self) -> list[dict]:
        """Every scored rating with its reader's name (for analysis; the key is joined by the caller)."""
        extras = "".join(f", t.{column}" for column in RATING_EXTRAS)
        with self._lock:
            rows = self._db.execute(
                "SELECT r.name, t.item_id, t.answer, t.confidence, t.client_seconds, t.server_seconds, t.created, "
                f"a.position{extras} FROM ratings t JOIN readers r USING (reader_id) "
                "JOIN assignments a ON a.reader_id = t.reader_id AND a.item_id = t.item_id "
                "ORDER BY r.reader_id, a.position").fetchall()
        keys = ("reader", "item_id", "answer", "confidence", "client_seconds", "server_seconds", "created", "order",
                *RATING_EXTRAS)
        return [dict(zip(keys, row)) for row in rows]

    def practice_ratings(self) -> list[dict]:
        """Every practice answer with its reader's name (not part of any figure)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.name, t.item_id, t.answer, t.confidence, t.client_seconds FROM practice_ratings t "
                "JOIN readers r USING (reader_id) ORDER BY r.reader_id, t.created").fetchall()
        return [dict(zip(("reader", "item_id", "answer", "confidence", "client_seconds"), row)) for row in rows]


def _display(study: dict) -> dict:
    """The study's display settings; a study built before they existed holds windowed 8-bit images."""
    from reader_study.render import ORIENTATION

    if "display" in study:
        return study["display"]
    render = study.get("render", {})
    return {"fov_mm": render.get("fov_mm"), "field_mm": render.get("fov_mm"), "marker": "off", "window_presets": {},
            "default_window": [render.get("window_hu", 400.0), render.get("level_hu", 40.0)],
            "pixel_mm": render.get("pixel_mm"), "slice_mm": render.get("slice_mm"),
            "depth_mm": render.get("depth_mm"), "orientation": ORIENTATION,
            "hu_offset": None, "encoding": "png8"}


def add_reader(study: str | Path, name: str, *, admin: bool = False) -> str:
    """Register a reader (or admin) in ``study`` and return the sign-in token."""
    store = Store(study)
    try:
        return store.add_reader(name, admin=admin)
    finally:
        store.close()
