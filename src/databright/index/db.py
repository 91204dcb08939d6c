"""Opening the index database (SQLite by default, PostgreSQL by URL) at the newest schema."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from databright.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


class Index:
    """A handle on the index database."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            # A web server reads from many threads: a pool that holds enough connections that
            # none is opened (and its pragmas run) per request. Only file databases pool.
            pooled = url.startswith("postgresql") or (url.startswith("sqlite:///")
                                                      and ":memory:" not in url)
            kw = {"pool_size": 20, "max_overflow": 20} if pooled else {}
            self.engine: Engine = create_engine(url, future=True, **kw)
        except (SQLAlchemyError, ImportError) as exc:
            raise ConfigError(f"cannot open the index database {url!r}: {exc}") from exc
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (default: the newest; a no-op when it is there)."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = None
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, revision)
            except SQLAlchemyError as exc:
                raise ConfigError(f"cannot migrate the index database: {exc}") from exc

    def tables(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the web server read while a CLI process writes; busy_timeout waits instead of failing.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def open_index(url: str) -> Index:
    """Open the index at ``url`` and migrate it to the newest schema."""
    index = Index(url)
    index.migrate()
    return index
