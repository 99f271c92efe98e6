"""Multi-row writes whose statement text does not depend on the number of rows.

On PostgreSQL a batch insert is `INSERT ... SELECT FROM unnest(<one array per column>)`. The
multi-row `VALUES` form is a different statement for every batch size, and asyncpg prepares
and keeps up to 100 statements per pooled connection: as batch sizes varied, each size became
its own prepared statement on each connection (about 10 MB per 50,000 webhooks in the memory
benchmark) and statements were re-prepared constantly. On SQLite, which prepares nothing
across calls, the executemany form is used: SQLAlchemy compiles it once and caches it.

Updates use executemany on both backends: one statement text, and asyncpg pipelines the rows.

Inside a SQLAlchemy transaction on PostgreSQL, these inserts and lookups run on the asyncpg
connection under it (`driver_connection`): the same statement, without the session's
compilation, result and greenlet layers. On the group commit's batch sizes (16-64 rows) that
is 12-16 % less client CPU for the write (`bench/inbox_driver_ab.py`, docs/performance.md).
The transaction stays SQLAlchemy's: its asyncpg adapter sends BEGIN lazily, so `_driver`
begins it through the adapter (a private method, checked for, and the SQLAlchemy path taken
without it), and a statement runs on the driver only once asyncpg says it is in that
transaction. Driver errors come out as SQLAlchemy's `DBAPIError` family, as they would through
the session (a closed connection is `connection_invalidated`: a 503).
"""

from __future__ import annotations

import logging
from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy.exc
from sqlalchemy import JSON, ColumnElement, Table, TextClause, any_, bindparam, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.selectable import TextualSelect

from channel_bridge import jsondoc

Bind = AsyncConnection | AsyncSession

_PG_DIALECT = postgresql.dialect()


def dialect_name(bind: Bind) -> str:
    if isinstance(bind, AsyncSession):
        return bind.get_bind().dialect.name
    return bind.dialect.name


def is_postgres(bind: Bind) -> bool:
    return dialect_name(bind) == "postgresql"


def dialect_insert(bind: Bind, table: Table) -> Any:
    """`INSERT` with the dialect's ON CONFLICT support."""
    return (postgresql.insert if is_postgres(bind) else sqlite.insert)(table)


def _is_json(column_type: Any) -> bool:
    impl = column_type.dialect_impl(_PG_DIALECT)
    return isinstance(impl, JSONB | JSON)


# (table, row keys, column, by, match, source): what a `Dependent`'s part of the statement
# text depends on (not its rows).
_DependentShape = tuple[Table, tuple[str, ...], str, str, str, str]


@dataclass(frozen=True, slots=True)
class Dependent:
    """Rows of another table, each naming one of the rows `insert_rows` inserts.

    Each row's `by` value is the `match` column of its parent row; it is written with
    `column` set to the parent's `source` column (its generated id). On PostgreSQL they go in
    the parent's own statement (a data-modifying CTE joined on the parent's RETURNING rows):
    one round trip for both tables.
    """

    table: Table
    rows: Sequence[dict[str, Any]]
    column: str
    by: str
    match: str
    source: str = "id"

    @property
    def own_columns(self) -> tuple[str, ...]:
        """The columns its rows give (all but `by`), in their order."""
        return tuple(name for name in self.rows[0] if name != self.by)

    @property
    def shape(self) -> _DependentShape:
        return (self.table, tuple(self.rows[0]), self.column, self.by, self.match, self.source)


def _unnest_select(
    table: Table,
    columns: tuple[str, ...],
    placeholder: Callable[[int, str], str],
    first: int,
    alias: str,
) -> tuple[list[str], list[str]]:
    """The selected expressions (of `alias`, the unnest) and the arrays of `columns`, their
    placeholders numbered from `first`."""
    selected, arrays = [], []
    for offset, name in enumerate(columns):
        column_type = table.c[name].type
        if _is_json(column_type):
            # JSON travels as text and is cast per element: asyncpg has no jsonb[] codec.
            arrays.append(f"CAST({placeholder(first + offset, name)} AS text[])")
            selected.append(f"CAST({alias}.{name} AS jsonb)")
        else:
            pg_type = column_type.dialect_impl(_PG_DIALECT).compile(dialect=_PG_DIALECT)
            arrays.append(f"CAST({placeholder(first + offset, name)} AS {pg_type}[])")
            selected.append(f"{alias}.{name}")
    return selected, arrays


def _dependent_sql(
    parent: Table,
    shape: _DependentShape,
    placeholder: Callable[[int, str], str],
    first: int,
) -> str:
    table, keys, column, by, match, source = shape
    own = tuple(name for name in keys if name != by)
    selected, arrays = _unnest_select(table, own, placeholder, first, "dependent")
    match_type = parent.c[match].type.dialect_impl(_PG_DIALECT).compile(dialect=_PG_DIALECT)
    arrays.append(f"CAST({placeholder(first + len(own), by)} AS {match_type}[])")
    return (
        f"INSERT INTO {table.name} ({', '.join((*own, column))}) "  # noqa: S608 (model names)
        f"SELECT {', '.join(selected)}, inserted.{source} "
        f"FROM unnest({', '.join(arrays)}) AS dependent({', '.join((*own, by))}) "
        f"JOIN inserted ON inserted.{match} = dependent.{by}"
    )


def _unnest_insert_sql(
    table: Table,
    columns: tuple[str, ...],
    conflict: tuple[str, ...] | None,
    returning: tuple[str, ...],
    placeholder: Callable[[int, str], str],
    notify: bool = False,
    dependents: tuple[_DependentShape, ...] = (),
) -> str:
    selected, arrays = _unnest_select(table, columns, placeholder, 0, "batch")
    # Table and column names come from the models, never from input: no injection here.
    statement = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(selected)} FROM unnest({', '.join(arrays)}) "
        f"AS batch({', '.join(columns)})"
    )
    if conflict is not None:
        target = f" ({', '.join(conflict)})" if conflict else ""
        statement += f" ON CONFLICT{target} DO NOTHING"
    if returning:
        statement += f" RETURNING {', '.join(returning)}"
    if not notify and not dependents:
        return statement
    parts = [f"inserted AS ({statement})"]
    next_placeholder = len(columns)
    tail = ""
    if notify:
        # The notification rides on the insert instead of costing a round trip of its own:
        # sent once (a materialized CTE is evaluated once), only if a row went in, and, as
        # any NOTIFY, delivered when the transaction commits.
        channel = placeholder(next_placeholder, "notify_channel")
        next_placeholder += 1
        parts.append(
            f"notified AS MATERIALIZED (SELECT pg_notify({channel}, '') FROM inserted LIMIT 1)"  # noqa: S608
        )
        tail = " LEFT JOIN notified ON true"
    for index, shape in enumerate(dependents):
        # A data-modifying CTE runs whether or not it is read; its foreign keys are checked
        # at the end of the statement, when the parent rows exist.
        parts.append(
            f"dependent_{index} AS ({_dependent_sql(table, shape, placeholder, next_placeholder)})"
        )
        next_placeholder += len(shape[1])
    return (
        f"WITH {', '.join(parts)} "  # noqa: S608 (names from the models)
        f"SELECT {', '.join(f'inserted.{name}' for name in returning)} FROM inserted{tail}"
    )


def _named(_index: int, name: str) -> str:
    return f":{name}"


def _positional(index: int, _name: str) -> str:
    return f"${index + 1}"


@cache
def _unnest_insert(
    table: Table,
    columns: tuple[str, ...],
    conflict: tuple[str, ...] | None,
    returning: tuple[str, ...],
    notify: bool,
) -> TextClause:
    clause = text(_unnest_insert_sql(table, columns, conflict, returning, _named, notify))
    if returning:
        clause = clause.columns(*(table.c[name] for name in returning))  # type: ignore[assignment]
    return clause


@cache
def _raw_unnest_insert(
    table: Table,
    columns: tuple[str, ...],
    conflict: tuple[str, ...] | None,
    returning: tuple[str, ...],
    notify: bool,
    dependents: tuple[_DependentShape, ...] = (),
) -> str:
    return _unnest_insert_sql(table, columns, conflict, returning, _positional, notify, dependents)


@cache
def _row_type(names: tuple[str, ...]) -> Any:
    """Rows read on the driver answer by attribute and position, as SQLAlchemy's rows do."""
    return namedtuple("Row", names)  # type: ignore[misc]


@cache
def _bind_processors(table: Table, columns: tuple[str, ...], dialect: Any) -> tuple[Any, ...]:
    """Each column's bind processor (a TypeDecorator's `process_bind_param`), or None."""
    return tuple(
        None if _is_json(table.c[name].type) else table.c[name].type.bind_processor(dialect)
        for name in columns
    )


# SQLAlchemy logs statements and parameters at INFO on this logger (BRIDGE_LOG_LEVELS): while
# an operator asks for that, every statement goes through SQLAlchemy so that it is logged.
_ENGINE_LOG = logging.getLogger("sqlalchemy.engine.Engine")


async def _driver(bind: Bind) -> tuple[AsyncConnection, Any] | None:
    """The asyncpg connection under `bind`, when its transaction has begun there."""
    if _ENGINE_LOG.isEnabledFor(logging.INFO):
        return None
    connection = await bind.connection() if isinstance(bind, AsyncSession) else bind
    sync = connection.sync_connection
    if sync is not None and sync.in_transaction() and not sync.invalidated:
        # In a transaction the pooled connection is held: read it without the greenlet hop
        # `get_raw_connection` makes for the case where it must be re-established.
        raw = sync.connection
    else:
        raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if driver is None or not hasattr(driver, "is_in_transaction"):
        return None
    if not driver.is_in_transaction() and connection.in_transaction():
        # SQLAlchemy's asyncpg adapter sends BEGIN lazily, with the first statement it runs
        # itself: begin now, its own way, so the transaction it commits is this one.
        adapted = raw.dbapi_connection
        start = getattr(adapted, "_start_transaction", None)
        if start is not None and getattr(adapted, "_transaction", False) is None:
            await start()
    if not driver.is_in_transaction():
        return None
    return connection, driver


async def _fetch_raw(
    connection: AsyncConnection, driver: Any, statement: str, args: Sequence[Any]
) -> list[Any]:
    try:
        return await driver.fetch(statement, *args)  # type: ignore[no-any-return]
    except (OSError, TimeoutError):
        raise  # the socket itself: answered 503 like SQLAlchemy's own disconnects
    except Exception as error:
        raise _as_dbapi_error(connection, driver, statement, error) from error


def _as_dbapi_error(
    connection: AsyncConnection, driver: Any, statement: str, error: Exception
) -> Exception:
    """asyncpg's error as SQLAlchemy would have raised it (OperationalError, IntegrityError …)."""
    dbapi = connection.dialect.dbapi
    translate = getattr(dbapi, "_asyncpg_error_translate", {})
    adapted: Exception = error
    for super_ in type(error).__mro__:
        if super_ in translate:
            adapted = translate[super_](error.args[0] if error.args else str(error), error)
            break
    base = getattr(dbapi, "Error", Exception)
    if not isinstance(adapted, base):
        return error
    return sqlalchemy.exc.DBAPIError.instance(
        statement,
        None,
        adapted,
        base,
        hide_parameters=True,
        connection_invalidated=bool(driver.is_closed()),
        dialect=connection.dialect,
    )


async def insert_rows(
    bind: Bind,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    on_conflict_do_nothing: Sequence[str] | None = None,
    returning: Sequence[str] = (),
    notify: str | None = None,
    dependents: Sequence[Dependent] = (),
) -> list[Any]:
    """Insert `rows` (all with the same keys) in one statement; the RETURNING rows, if asked.

    `on_conflict_do_nothing` names the conflict target; an empty sequence means any unique
    constraint. Rows are inserted in the order given: callers that may race on a unique key
    pass them sorted by it, so two concurrent batches never wait on each other in a cycle.
    `notify` (PostgreSQL; needs `returning`) is a channel the same statement NOTIFYs once if
    it inserted a row; elsewhere it is ignored. `dependents` are written with the rows they
    name (their `match` and `source` columns must be returned); a dependent row whose parent
    was not inserted (a conflict) is not written either.
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    conflict = None if on_conflict_do_nothing is None else tuple(on_conflict_do_nothing)
    if notify is not None and not returning:
        raise ValueError("insert_rows(notify=...) needs returning columns")
    dependents = [dependent for dependent in dependents if dependent.rows]
    for dependent in dependents:
        if dependent.match not in returning or dependent.source not in returning:
            raise ValueError(
                f"a dependent of {table.name} needs {dependent.match!r} and "
                f"{dependent.source!r} returned"
            )
    if is_postgres(bind):
        params: dict[str, Any] = {}
        for name in columns:
            params[name] = _column_values(table, name, rows)
        notifies = notify is not None
        on_driver = await _driver(bind)
        if on_driver is not None:
            connection, driver = on_driver
            args = _driver_args(table, columns, params, connection.dialect)
            if notifies:
                args.append(notify)
            for dependent in dependents:
                own = dependent.own_columns
                args += _driver_args(
                    dependent.table,
                    own,
                    {name: _column_values(dependent.table, name, dependent.rows) for name in own},
                    connection.dialect,
                )
                args.append([row[dependent.by] for row in dependent.rows])
            records = await _fetch_raw(
                connection,
                driver,
                _raw_unnest_insert(
                    table,
                    columns,
                    conflict,
                    tuple(returning),
                    notifies,
                    tuple(dependent.shape for dependent in dependents),
                ),
                args,
            )
            row_type = _row_type(tuple(returning)) if returning else None
            return [row_type(*record) for record in records] if row_type else []
        statement = _unnest_insert(table, columns, conflict, tuple(returning), notifies)
        if notifies:
            params["notify_channel"] = notify
        result = await bind.execute(statement, params)
        inserted = list(result) if returning else []
    else:
        insert = dialect_insert(bind, table)
        if conflict is not None:
            insert = insert.on_conflict_do_nothing(index_elements=list(conflict) or None)
        if returning:
            insert = insert.returning(*(table.c[name] for name in returning))
            inserted = list(await bind.execute(insert, list(rows)))
        else:
            await bind.execute(insert, list(rows))
            inserted = []
    # Without the driver's one statement: each dependent table in a statement of its own.
    for dependent in dependents:
        parents = {
            getattr(row, dependent.match): getattr(row, dependent.source) for row in inserted
        }
        await insert_rows(
            bind,
            dependent.table,
            [
                {
                    **{name: row[name] for name in dependent.own_columns},
                    dependent.column: parents[row[dependent.by]],
                }
                for row in dependent.rows
                if row[dependent.by] in parents
            ],
        )
    return inserted


def _column_values(table: Table, name: str, rows: Sequence[dict[str, Any]]) -> list[Any]:
    values = [row[name] for row in rows]
    if _is_json(table.c[name].type):
        return [None if value is None else jsondoc.dumps(value) for value in values]
    return values


def _driver_args(
    table: Table, columns: tuple[str, ...], params: dict[str, list[Any]], dialect: Any
) -> list[Any]:
    """One array per column, through the column type's bind processor where it has one."""
    processors = _bind_processors(table, columns, dialect)
    return [
        params[name] if process is None else [process(v) for v in params[name]]
        for name, process in zip(columns, processors, strict=True)
    ]


def _unnest_lookup_sql(
    table: Table,
    key_columns: tuple[str, ...],
    selected: tuple[str, ...],
    placeholder: Callable[[int, str], str],
    latest_by: str | None = None,
) -> str:
    arrays, conditions = [], []
    for index, name in enumerate(key_columns):
        pg_type = table.c[name].type.dialect_impl(_PG_DIALECT).compile(dialect=_PG_DIALECT)
        arrays.append(f"CAST({placeholder(index, name)} AS {pg_type}[])")
        conditions.append(f"t.{name} = k.{name}")
    keys = f"unnest({', '.join(arrays)}) AS k({', '.join(key_columns)})"
    columns = ", ".join(f"t.{name}" for name in selected)
    # Names come from the models, never from input.
    if latest_by is None:
        return (
            f"SELECT {columns} FROM {table.name} AS t JOIN {keys} "  # noqa: S608
            f"ON {' AND '.join(conditions)}"
        )
    # One index probe per key, whatever the statistics say: as a plain join, statistics from
    # a smaller table let the planner probe an index on the first key column alone and filter
    # on the rest (every conversation of a channel, for every key of every accepted batch).
    return (
        f"SELECT {', '.join(f'l.{name}' for name in selected)} FROM {keys} "  # noqa: S608
        f"CROSS JOIN LATERAL (SELECT {columns} FROM {table.name} AS t "
        f"WHERE {' AND '.join(conditions)} ORDER BY t.{latest_by} DESC LIMIT 1) AS l"
    )


@cache
def _unnest_lookup(
    table: Table,
    key_columns: tuple[str, ...],
    selected: tuple[str, ...],
    latest_by: str | None = None,
) -> TextualSelect:
    statement = _unnest_lookup_sql(table, key_columns, selected, _named, latest_by)
    return text(statement).columns(*(table.c[name] for name in selected))


@cache
def _raw_unnest_lookup(
    table: Table,
    key_columns: tuple[str, ...],
    selected: tuple[str, ...],
    latest_by: str | None = None,
) -> str:
    return _unnest_lookup_sql(table, key_columns, selected, _positional, latest_by)


@cache
def _result_processors(table: Table, selected: tuple[str, ...], dialect: Any) -> tuple[Any, ...]:
    """Each selected column's result processor (a TypeDecorator's), or None; JSON is decoded
    by the connection's own jsonb codec (set up by SQLAlchemy's asyncpg dialect)."""
    processors = []
    for name in selected:
        column_type = table.c[name].type
        processors.append(
            None
            if _is_json(column_type)
            else column_type.dialect_impl(dialect).result_processor(dialect, None)
        )
    return tuple(processors)


async def select_by_keys(
    bind: Bind,
    table: Table,
    key_columns: Sequence[str],
    keys: Sequence[tuple[Any, ...]],
    selected: Sequence[str],
    *,
    latest_by: str | None = None,
) -> list[Any]:
    """The rows whose `key_columns` equal one of `keys`, as `selected` columns; with
    `latest_by` (a column in `selected`), only each key's row with the highest value of it.

    On PostgreSQL a join with `unnest` of one array per key column: one statement text for
    any number of keys (a tuple `IN` list is a new statement, and a new prepared statement on
    every pooled connection, for every batch size). SQLite prepares nothing: tuple `IN`.
    """
    if not keys:
        return []
    if is_postgres(bind):
        on_driver = await _driver(bind)
        if on_driver is not None:
            connection, driver = on_driver
            key_processors = _bind_processors(table, tuple(key_columns), connection.dialect)
            args = [
                [key[i] if process is None else process(key[i]) for key in keys]
                for i, process in enumerate(key_processors)
            ]
            records = await _fetch_raw(
                connection,
                driver,
                _raw_unnest_lookup(table, tuple(key_columns), tuple(selected), latest_by),
                args,
            )
            row_type = _row_type(tuple(selected))
            processors = _result_processors(table, tuple(selected), connection.dialect)
            if not any(processors):
                return [row_type(*record) for record in records]
            return [
                row_type(
                    *(v if p is None else p(v) for v, p in zip(record, processors, strict=True))
                )
                for record in records
            ]
        statement = _unnest_lookup(table, tuple(key_columns), tuple(selected), latest_by)
        params = {name: [key[i] for key in keys] for i, name in enumerate(key_columns)}
        return list(await bind.execute(statement, params))
    columns = [table.c[name] for name in key_columns]
    query = select(*(table.c[name] for name in selected)).where(tuple_(*columns).in_(list(keys)))
    rows = list(await bind.execute(query))
    if latest_by is None:
        return rows
    latest: dict[tuple[Any, ...], Any] = {}
    for row in rows:
        key = tuple(getattr(row, name) for name in key_columns)
        if key not in latest or getattr(row, latest_by) > getattr(latest[key], latest_by):
            latest[key] = row
    return list(latest.values())


def among(bind: Bind, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values` whose statement text does not depend on how many values there are.

    PostgreSQL: `column = ANY($1)` with one array parameter (see `select_by_keys` for why the
    text must be stable). SQLite: an ordinary `IN` list.
    """
    values = list(values)
    if is_postgres(bind):
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


_ASYNCPG_DIALECT = asyncpg_dialect.dialect()
_numbered_text: dict[TextClause, tuple[str, tuple[str, ...]]] = {}


def _numbered(statement: TextClause) -> tuple[str, tuple[str, ...]]:
    """The statement as asyncpg takes it ($1 …) and its parameter names in that order."""
    found = _numbered_text.get(statement)
    if found is None:
        compiled = statement.compile(dialect=_ASYNCPG_DIALECT)
        found = _numbered_text[statement] = (compiled.string, tuple(compiled.positiontup or ()))
    return found


async def fetch_text(bind: Bind, statement: TextClause, params: dict[str, Any]) -> list[Any]:
    """The rows of a PostgreSQL textual statement, on the driver inside a transaction.

    For the repositories' own PostgreSQL statements on a hot path (a `= ANY` lookup,
    `pg_notify`): the text is fixed, so it is one prepared statement whatever the values.
    Parameters are passed as they are (no type processing): cast them in the text. Outside a
    transaction, or while statements are logged, SQLAlchemy executes it.
    """
    on_driver = await _driver(bind)
    if on_driver is None:
        return list(await bind.execute(statement, params))
    connection, driver = on_driver
    sql, names = _numbered(statement)
    records = await _fetch_raw(connection, driver, sql, [params[name] for name in names])
    if not records:
        return []
    row_type = _row_type(tuple(records[0].keys()))
    return [row_type(*record) for record in records]
