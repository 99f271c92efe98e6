"""Multi-row writes whose statement text does not depend on the number of rows.

On PostgreSQL a batch insert is `INSERT ... SELECT FROM unnest(<one array per column>)`. The
multi-row `VALUES` form is a different statement for every batch size, and asyncpg prepares
and keeps up to 100 statements per pooled connection: as batch sizes varied, each size became
its own prepared statement on each connection (about 10 MB per 50,000 webhooks in the memory
benchmark) and statements were re-prepared constantly. On SQLite, which prepares nothing
across calls, the executemany form is used: SQLAlchemy compiles it once and caches it.

Updates use executemany on both backends: one statement text, and asyncpg pipelines the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import JSON, ColumnElement, Table, TextClause, any_, bindparam, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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


@cache
def _unnest_insert(
    table: Table,
    columns: tuple[str, ...],
    conflict: tuple[str, ...] | None,
    returning: tuple[str, ...],
) -> TextClause:
    selected, arrays = [], []
    for name in columns:
        column_type = table.c[name].type
        if _is_json(column_type):
            # JSON travels as text and is cast per element: asyncpg has no jsonb[] codec.
            arrays.append(f"CAST(:{name} AS text[])")
            selected.append(f"CAST({name} AS jsonb)")
        else:
            pg_type = column_type.dialect_impl(_PG_DIALECT).compile(dialect=_PG_DIALECT)
            arrays.append(f"CAST(:{name} AS {pg_type}[])")
            selected.append(name)
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
    clause = text(statement)
    if returning:
        clause = clause.columns(*(table.c[name] for name in returning))  # type: ignore[assignment]
    return clause


async def insert_rows(
    bind: Bind,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    on_conflict_do_nothing: Sequence[str] | None = None,
    returning: Sequence[str] = (),
) -> list[Any]:
    """Insert `rows` (all with the same keys) in one statement; the RETURNING rows, if asked.

    `on_conflict_do_nothing` names the conflict target; an empty sequence means any unique
    constraint. Rows are inserted in the order given: callers that may race on a unique key
    pass them sorted by it, so two concurrent batches never wait on each other in a cycle.
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    conflict = None if on_conflict_do_nothing is None else tuple(on_conflict_do_nothing)
    if is_postgres(bind):
        statement = _unnest_insert(table, columns, conflict, tuple(returning))
        params: dict[str, list[Any]] = {}
        for name in columns:
            values = [row[name] for row in rows]
            if _is_json(table.c[name].type):
                values = [None if value is None else jsondoc.dumps(value) for value in values]
            params[name] = values
        result = await bind.execute(statement, params)
        return list(result) if returning else []
    insert = dialect_insert(bind, table)
    if conflict is not None:
        insert = insert.on_conflict_do_nothing(index_elements=list(conflict) or None)
    if returning:
        insert = insert.returning(*(table.c[name] for name in returning))
        result = await bind.execute(insert, list(rows))
        return list(result)
    await bind.execute(insert, list(rows))
    return []


@cache
def _unnest_lookup(
    table: Table, key_columns: tuple[str, ...], selected: tuple[str, ...]
) -> TextualSelect:
    arrays, joins = [], []
    for name in key_columns:
        pg_type = table.c[name].type.dialect_impl(_PG_DIALECT).compile(dialect=_PG_DIALECT)
        arrays.append(f"CAST(:{name} AS {pg_type}[])")
        joins.append(f"t.{name} = k.{name}")
    # Names come from the models, never from input.
    statement = (
        f"SELECT {', '.join(f't.{name}' for name in selected)} FROM {table.name} AS t "  # noqa: S608
        f"JOIN unnest({', '.join(arrays)}) AS k({', '.join(key_columns)}) "
        f"ON {' AND '.join(joins)}"
    )
    return text(statement).columns(*(table.c[name] for name in selected))


async def select_by_keys(
    bind: Bind,
    table: Table,
    key_columns: Sequence[str],
    keys: Sequence[tuple[Any, ...]],
    selected: Sequence[str],
) -> list[Any]:
    """The rows whose `key_columns` equal one of `keys`, as `selected` columns.

    On PostgreSQL a join with `unnest` of one array per key column: one statement text for
    any number of keys (a tuple `IN` list is a new statement, and a new prepared statement on
    every pooled connection, for every batch size). SQLite prepares nothing: tuple `IN`.
    """
    if not keys:
        return []
    if is_postgres(bind):
        statement = _unnest_lookup(table, tuple(key_columns), tuple(selected))
        params = {name: [key[i] for key in keys] for i, name in enumerate(key_columns)}
        return list(await bind.execute(statement, params))
    columns = [table.c[name] for name in key_columns]
    query = select(*(table.c[name] for name in selected)).where(tuple_(*columns).in_(list(keys)))
    return list(await bind.execute(query))


def among(bind: Bind, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values` whose statement text does not depend on how many values there are.

    PostgreSQL: `column = ANY($1)` with one array parameter (see `select_by_keys` for why the
    text must be stable). SQLite: an ordinary `IN` list.
    """
    values = list(values)
    if is_postgres(bind):
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]
