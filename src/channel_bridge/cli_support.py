"""What every sub-CLI shares: its settings, the database for one command, failing in one line,
and what the root CLI hands down.

The root CLI (`cli.py`) imports the sub-CLIs, so they take all of this from here and from
`startup.py`, never from the entry point. The root CLI is also the commands' composition
point: what a sub-CLI needs but may not import (the bridge's planners, for the mappings CLI)
it puts in click's context object as a `CommandContext`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_bridge.settings import Settings

if TYPE_CHECKING:
    from channel_bridge.mappings.service import IntegrationChangePlanner

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What the root CLI hands its sub-commands (click's `ctx.obj` on the root context)."""

    # What an integration change queues (the Akixi mirror): the bridge's to decide.
    integration_change: IntegrationChangePlanner


def command_context(ctx: typer.Context) -> CommandContext:
    """The root CLI's `CommandContext`, from inside any of its commands."""
    found = ctx.find_root().obj
    if not isinstance(found, CommandContext):
        raise RuntimeError("this command runs under the channel-bridge CLI (cli.py), not alone")
    return found


def command_settings(*, upstream: bool = False) -> Settings:
    """The settings of a command; with `upstream`, those of the upstream it calls (in sandbox
    mode the simulators `channel-bridge serve` mounts)."""
    from channel_bridge.startup import load_settings, load_upstream_settings

    return load_upstream_settings() if upstream else load_settings()


async def with_database(
    settings: Settings, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]
) -> T:
    """Run `work` with a session factory on the configured database, closed afterwards."""
    from channel_bridge.db.engine import create_engine, create_sessionmaker

    engine = create_engine(settings)
    try:
        return await work(create_sessionmaker(engine))
    finally:
        await engine.dispose()


async def in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction: committed when it returns, rolled back when it raises."""
    from channel_bridge.db.engine import transaction

    async def run(sessionmaker: async_sessionmaker[AsyncSession]) -> T:
        async with transaction(sessionmaker) as session:
            return await work(session)

    return await with_database(settings, run)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Say what went wrong in one line on stderr; raise the returned Exit."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
