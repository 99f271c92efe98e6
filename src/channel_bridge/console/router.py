"""The operator console at /admin/ui: server-rendered pages over the admin services.

Every page but the login form needs the session cookie (see `session.py`); a page asked for
without one redirects to the login form, a form posted without one is refused with 401, and
a form posted without its CSRF token with 403. Pages are plain HTML forms: no script at all.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
import markupsafe
from fastapi import APIRouter, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.responses import FileResponse, RedirectResponse, Response

from channel_bridge import __version__
from channel_bridge.console import views
from channel_bridge.console.session import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    LOGIN_FORM_TTL_S,
    NOTICE_COOKIE,
    PATH,
    SESSION_COOKIE,
    ConsoleCookies,
    ConsoleSession,
)
from channel_bridge.db.base import utcnow
from channel_bridge.db.models import DeliveryStatus
from channel_bridge.deps import (
    SessionDep,
    SettingsDep,
    get_destinations,
    get_settings,
    get_worker,
)
from channel_bridge.errors import BadRequest, BridgeError
from channel_bridge.mappings.router import ChannelServiceDep, IntegrationServiceDep
from channel_bridge.ops.logging import get_logger, redact_text
from channel_bridge.platforms.nexus.provisioning import webhook_url
from channel_bridge.relay import service as relay
from channel_bridge.security import tokens_equal
from channel_bridge.settings import Settings

log = get_logger(__name__)

HERE = FilePath(__file__).parent


def _finalize(value: Any) -> Any:
    """Every value a template prints: known secret values masked (markup built by a macro
    was finalized piece by piece already)."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return redact_text(value)
    return value


# Autoescaping on for every template: nothing a webhook carried can become markup.
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        auto_reload=False,
        finalize=_finalize,
    )
)
STYLESHEET = HERE / "static" / "console.css"

# No script, no frames, forms only to ourselves: the console needs nothing else.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ConversationId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class LoginRequired(Exception):
    pass


class CsrfRefused(Exception):
    pass


def cookies_for(settings: Settings) -> ConsoleCookies:
    return ConsoleCookies(
        settings.admin_token,
        ttl_s=settings.console_session_ttl_s,
        secure=settings.public_base_url.startswith("https://"),
    )


def get_cookies(settings: SettingsDep) -> ConsoleCookies:
    return cookies_for(settings)


CookiesDep = Annotated[ConsoleCookies, Depends(get_cookies)]


def require_session(request: Request, cookies: CookiesDep) -> ConsoleSession:
    """The operator's session, or LoginRequired (a redirect to the login form)."""
    session = cookies.read_session(request.cookies.get(SESSION_COOKIE), now=utcnow())
    if session is None:
        raise LoginRequired
    return session


ConsoleSessionDep = Annotated[ConsoleSession, Depends(require_session)]


async def checked_form(
    request: Request, session: ConsoleSessionDep, cookies: CookiesDep
) -> FormData:
    """The posted form, once its CSRF token matches the session's; else 403."""
    form = await request.form()
    token = form.get(CSRF_FIELD)
    if not cookies.csrf_valid(session, token if isinstance(token, str) else None):
        raise CsrfRefused
    return form


FormDep = Annotated[FormData, Depends(checked_form)]


class ConsoleRoute(APIRoute):
    """Console errors as HTML pages (the API's are problem+json), security headers on all."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handle(request)
            except LoginRequired:
                if request.method == "GET":
                    target = request.url.path
                    if request.url.query:
                        target += f"?{request.url.query}"
                    response = RedirectResponse(
                        f"{PATH}/login?{urlencode({'next': target})}", status_code=303
                    )
                else:
                    response = error_page(request, 401, "Log in first", "Your session has ended.")
            except CsrfRefused:
                response = error_page(
                    request,
                    403,
                    "Form refused",
                    "The form did not carry this session's CSRF token; reload the page and "
                    "try again.",
                )
            except RequestValidationError:
                response = error_page(
                    request, 422, "Not a valid request", "A value in the address is not valid."
                )
            except BridgeError as exc:
                response = error_page(request, exc.status, exc.title, exc.detail)
            response.headers.update(SECURITY_HEADERS)
            return response

        return route


router = APIRouter(prefix=PATH, include_in_schema=False, route_class=ConsoleRoute)


def render(
    request: Request,
    template: str,
    *,
    session: ConsoleSession | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    cookies = cookies_for(get_settings(request))
    notices = cookies.read_notice(request.cookies.get(NOTICE_COOKIE), now=utcnow())
    response = templates.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "csrf_field": CSRF_FIELD,
            "csrf_token": session.csrf_token if session else None,
            "notices": notices,
            "version": __version__,
            "base": PATH,
            **context,
        },
        status_code=status_code,
    )
    if NOTICE_COOKIE in request.cookies:
        cookies.clear(response, NOTICE_COOKIE)
    return response


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    session = cookies_for(get_settings(request)).read_session(
        request.cookies.get(SESSION_COOKIE), now=utcnow()
    )
    return render(
        request,
        "error.html",
        session=session,
        status_code=status,
        status=status,
        title=title,
        detail=detail,
    )


def redirect_with_notices(
    request: Request, target: str, notices: list[dict[str, str]]
) -> RedirectResponse:
    response = RedirectResponse(target, status_code=303)
    cookies_for(get_settings(request)).set(
        response,
        NOTICE_COOKIE,
        cookies_for(get_settings(request)).sign_notice(notices, now=utcnow()),
        max_age=60,
    )
    return response


def local_target(value: Any, default: str) -> str:
    """A console URL to go back to; anything else (another site, another path) is ignored."""
    if isinstance(value, str) and value.startswith(PATH) and not value.startswith("//"):
        if "\\" not in value and "\n" not in value and "\r" not in value:
            return value
    return default


# --- login ---------------------------------------------------------------------------------


@router.get("/static/console.css")
async def stylesheet() -> Response:
    """The only thing served without a session: the stylesheet (no data in it)."""
    return FileResponse(STYLESHEET, media_type="text/css")


@router.get("/login")
async def login_form(request: Request, cookies: CookiesDep, next: str | None = None) -> Response:
    nonce = cookies.new_login_nonce()
    response = render(
        request,
        "login.html",
        next=local_target(next, PATH),
        login_csrf=cookies.login_csrf(nonce),
        error=None,
    )
    cookies.set(response, LOGIN_COOKIE, nonce, max_age=LOGIN_FORM_TTL_S)
    return response


@router.post("/login")
async def login(request: Request, cookies: CookiesDep, settings: SettingsDep) -> Response:
    form = await request.form()
    token, given_csrf, target = form.get("token"), form.get(CSRF_FIELD), form.get("next")
    if not cookies.login_csrf_valid(
        request.cookies.get(LOGIN_COOKIE), given_csrf if isinstance(given_csrf, str) else None
    ):
        raise CsrfRefused
    if not isinstance(token, str) or not tokens_equal(token.strip(), settings.admin_token):
        log.warning("console login refused")
        nonce = cookies.new_login_nonce()
        response = render(
            request,
            "login.html",
            status_code=401,
            next=local_target(target, PATH),
            login_csrf=cookies.login_csrf(nonce),
            error="That is not the admin token.",
        )
        cookies.set(response, LOGIN_COOKIE, nonce, max_age=LOGIN_FORM_TTL_S)
        return response
    log.info("console login")
    response = RedirectResponse(local_target(target, PATH), status_code=303)
    cookies.set(response, SESSION_COOKIE, cookies.new_session(now=utcnow()), max_age=cookies.ttl_s)
    cookies.clear(response, LOGIN_COOKIE)
    return response


@router.post("/logout")
async def logout(_form: FormDep, cookies: CookiesDep) -> Response:
    response = RedirectResponse(f"{PATH}/login", status_code=303)
    cookies.clear(response, SESSION_COOKIE)
    return response


# --- overview ------------------------------------------------------------------------------


@router.get("")
async def overview_page(request: Request, session: ConsoleSessionDep, db: SessionDep) -> Response:
    registry = get_destinations(request)
    destinations = [
        (d.name, d.circuit.key if d.circuit is not None else None) for d in registry.all()
    ]
    rows = await views.overview(db, destinations=destinations)
    return render(request, "overview.html", session=session, rows=rows, page="overview")


# --- deliveries ----------------------------------------------------------------------------


def _moment(value: str | None, field: str) -> datetime | None:
    """A `datetime-local` value (taken as UTC) or an ISO 8601 time."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{field} is not a date and time",
            errors=[{"field": field, "message": "e.g. 2026-12-01T14:30"}],
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@router.get("/deliveries")
async def deliveries_page(
    request: Request,
    session: ConsoleSessionDep,
    db: SessionDep,
    status: str | None = None,
    destination: str | None = None,
    channel: str | None = None,
    conversation: str | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
) -> Response:
    if conversation and not conversation.isdigit():
        raise BadRequest("The conversation filter is a conversation number")
    filters = views.DeliveryFilters(
        status=status or None,
        destination=destination or None,
        channel=(channel or "").strip() or None,
        conversation=int(conversation) if conversation else None,
        since=_moment(since, "since"),
        until=_moment(until, "until"),
        cursor=cursor or None,
    )
    page = await views.deliveries_page(db, filters)
    registry = get_destinations(request)
    return render(
        request,
        "deliveries.html",
        session=session,
        page="deliveries",
        filters=filters,
        deliveries=page.items,
        next_query=urlencode(filters.query(cursor=page.next_cursor)) if page.next_cursor else None,
        statuses=tuple(DeliveryStatus),
        destinations=registry.names(),
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    )


@router.get("/deliveries/{delivery_id}")
async def delivery_page(
    request: Request, delivery_id: DeliveryId, session: ConsoleSessionDep, db: SessionDep
) -> Response:
    view = await views.delivery_view(db, delivery_id)
    return render(
        request,
        "delivery.html",
        session=session,
        page="deliveries",
        view=view,
        here=request.url.path,
    )


def _selected(form: FormData) -> list[int]:
    ids = []
    for value in form.getlist("delivery_id"):
        if isinstance(value, str) and value.isdigit() and 0 < int(value) < 2**63:
            ids.append(int(value))
    if not ids:
        raise BadRequest("Select at least one delivery")
    return sorted(set(ids))


async def _each_selected(
    request: Request,
    form: FormData,
    db: AsyncSession,
    verb: str,
    action: Callable[[int], Coroutine[Any, Any, object]],
) -> tuple[RedirectResponse, list[int]]:
    """Run `action` on each selected delivery; back to the page with one notice per outcome.

    Each delivery is its own transaction (committed here, not by the session dependency), so
    one refused delivery does not undo the others.
    """
    notices = []
    done = []
    for delivery_id in _selected(form):
        try:
            await action(delivery_id)
            await db.commit()
            done.append(delivery_id)
        except BridgeError as exc:
            await db.rollback()
            notices.append({"level": "error", "text": exc.detail})
    if done:
        notices.insert(0, {"level": "ok", "text": _summary(verb, done)})
        log.info("console action", action=verb.lower(), deliveries=done)
    target = local_target(form.get("next"), f"{PATH}/deliveries")
    return redirect_with_notices(request, target, notices), done


@router.post("/deliveries/replay")
async def replay(request: Request, form: FormDep, db: SessionDep) -> Response:
    """Replay the selected deliveries (a delivered one only with `force`)."""
    force = form.get("force") == "true"
    response, replayed = await _each_selected(
        request,
        form,
        db,
        "Replayed",
        lambda delivery_id: relay.replay_delivery(db, delivery_id, force=force),
    )
    worker = get_worker(request)
    if replayed and worker is not None:
        worker.wake()
    return response


@router.post("/deliveries/cancel")
async def cancel(request: Request, form: FormDep, db: SessionDep) -> Response:
    """Cancel the selected pending or dead deliveries."""
    response, _cancelled = await _each_selected(
        request, form, db, "Cancelled", lambda delivery_id: relay.cancel_delivery(db, delivery_id)
    )
    return response


def _summary(verb: str, ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:20]) + (" …" if len(ids) > 20 else "")
    noun = "delivery" if len(ids) == 1 else "deliveries"
    return f"{verb} {len(ids)} {noun}: {shown}"


# --- conversations -------------------------------------------------------------------------


@router.get("/conversations")
async def conversations_page(
    request: Request,
    session: ConsoleSessionDep,
    db: SessionDep,
    customer: str | None = None,
    channel: str | None = None,
    dialog: str | None = None,
) -> Response:
    found = await views.find_conversations(
        db,
        customer=(customer or "").strip(),
        channel=(channel or "").strip(),
        provider_dialog_id=(dialog or "").strip(),
    )
    return render(
        request,
        "conversations.html",
        session=session,
        page="conversations",
        conversations=found,
        customer=customer or "",
        channel=channel or "",
        dialog=dialog or "",
    )


@router.get("/conversations/{conversation_id}")
async def conversation_page(
    request: Request, conversation_id: ConversationId, session: ConsoleSessionDep, db: SessionDep
) -> Response:
    trace = await views.conversation_trace(db, conversation_id)
    return render(request, "conversation.html", session=session, page="conversations", trace=trace)


# --- channels and integrations -------------------------------------------------------------


@router.get("/channels")
async def channels_page(
    request: Request,
    session: ConsoleSessionDep,
    db: SessionDep,
    settings: SettingsDep,
    channels: ChannelServiceDep,
    integrations: IntegrationServiceDep,
) -> Response:
    mapped = [channels.to_out(channel) for channel in await channels.list_channels(db)]
    return render(
        request,
        "channels.html",
        session=session,
        page="channels",
        channels=[(channel, webhook_url(settings, channel.nexus_channel_id)) for channel in mapped],
        integrations=[
            integrations.to_out(row)
            for row in await integrations.list_integrations(db, include_deleted=True)
        ],
        held=[integrations.to_held_out(event) for event in await integrations.list_held(db)],
    )


def age(value: timedelta | None) -> str:
    """A duration as an operator reads it: 42 s, 7 min, 3 h 5 min, 2 d 4 h."""
    if value is None:
        return "–"
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d {hours % 24} h"


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "–"


templates.env.filters["age"] = age
templates.env.filters["when"] = when
