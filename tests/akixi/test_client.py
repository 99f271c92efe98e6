"""AkixiClient against the in-process simulator (and respx where the body must be hostile)."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
import respx

from channel_bridge.platforms.akixi.client import AkixiClient, InvokeIdCounter
from channel_bridge.platforms.akixi.errors import (
    AkixiAuthenticationError,
    AkixiConfigError,
    AkixiEntryNotFound,
    AkixiLoginSuspended,
    AkixiProtocolError,
    AkixiSessionError,
    AkixiUnsafeXml,
)
from channel_bridge.platforms.akixi.xml import masked_excerpt
from channel_bridge.relay.errors import PermanentError, RetryableError, ThrottledError
from channel_bridge.sandbox.akixi import SEED_PARTITION_GUID, AkixiSimulator
from tests.akixi.conftest import AKIXI_URL, FakeClock, akixi_settings
from tests.akixi.test_xml import BILLION_LAUGHS, EXTERNAL_ENTITY

SESSION_OPS = ["CreateSession", "Authenticate"]


async def test_session_opened_once_and_reused(
    client: AkixiClient, simulator: AkixiSimulator
) -> None:
    simulator.add_entry("axp-1", description="Sales")
    await client.omnichannel_info("axp-1")
    await client.omnichannel_info("axp-1")
    assert simulator.operations(include_session=True) == [
        *SESSION_OPS,
        "OmnichannelIntInfo",
        "OmnichannelIntInfo",
    ]
    create, auth, first, second = simulator.log
    assert create.session_id is None  # CreateSession is the one request without a SessionID
    assert auth.session_id and first.session_id == second.session_id == auth.session_id
    assert auth.payload == {"UserID": "sandbox-akixi-admin", "Password": "***"}
    assert {call.content_type for call in simulator.log} == {"text/xml; charset=UTF-8"}
    assert [call.invoke_id for call in simulator.log] == ["00000", "00001", "00002", "00003"]


async def test_authenticate_sends_the_sha256_nonce_digest_on_the_wire() -> None:
    sent: list[bytes] = []

    def akixi(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        operation = request.content.split(b'Operation="', 1)[1].split(b'"', 1)[0].decode()
        invoke = request.content.split(b"<InvokeID>", 1)[1][:5].decode()
        body = f'<Response Result="Success"><InvokeID>{invoke}</InvokeID>'
        if operation == "CreateSession":
            body += (
                '<Success><Property Name="SessionID">S1</Property>'
                '<Property Name="Nonce">n0nce</Property></Success>'
            )
        return httpx.Response(200, text=body + "</Response>")

    with respx.mock(assert_all_called=True) as mock:
        mock.post(AKIXI_URL).mock(side_effect=akixi)
        async with httpx.AsyncClient() as http:
            client = AkixiClient(http, akixi_settings(akixi_password="s3cret-pw"))
            await client.omnichannel_delete("axp-9")
    digest = hashlib.sha256(b"n0nces3cret-pw").hexdigest()
    assert sent[1] == (
        b'<Request Operation="Authenticate"><InvokeID>00001</InvokeID><SessionID>S1</SessionID>'
        b'<OperationPayload><Property Name="UserID">sandbox-akixi-admin</Property>'
        b'<Property Name="Password">'
        + digest.encode()
        + b"</Property></OperationPayload></Request>"
    )
    assert b"s3cret-pw" not in b"".join(sent)
    assert sent[2] == (
        b'<Request Operation="OmnichannelIntDelete"><InvokeID>00002</InvokeID>'
        b"<SessionID>S1</SessionID>"
        b'<OperationPayload><Property Name="UniqueID">axp-9</Property></OperationPayload></Request>'
    )


async def test_expired_session_reauthenticates_once_and_retries_with_a_new_invoke_id(
    client: AkixiClient, simulator: AkixiSimulator
) -> None:
    simulator.add_entry("axp-1", description="Sales")
    await client.omnichannel_info("axp-1")
    simulator.expire_sessions()
    await client.omnichannel_change("axp-1", {"Description": "Sales EU"})
    assert simulator.operations(include_session=True) == [
        *SESSION_OPS,
        "OmnichannelIntInfo",
        "OmnichannelIntChange",
        *SESSION_OPS,
        "OmnichannelIntChange",
    ]
    failed, retried = simulator.calls("OmnichannelIntChange")
    assert (failed.result, failed.code, retried.result) == ("Fail", 10302, "Success")
    assert failed.invoke_id != retried.invoke_id
    assert failed.session_id != retried.session_id
    assert simulator.entries["axp-1"]["Description"] == "Sales EU"


async def test_session_lost_again_after_relogin_is_retryable_not_a_loop(
    client: AkixiClient, simulator: AkixiSimulator
) -> None:
    simulator.fail_next("OmnichannelIntInfo", 10301, times=5)
    with pytest.raises(AkixiSessionError) as caught:
        await client.omnichannel_info("axp-1")
    assert isinstance(caught.value, RetryableError) and caught.value.code == 10301
    assert simulator.operations(include_session=True) == [
        *SESSION_OPS,
        "OmnichannelIntInfo",
        *SESSION_OPS,
        "OmnichannelIntInfo",
    ]


async def test_bad_credentials_are_permanent_after_exactly_one_authenticate(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator, clock: FakeClock
) -> None:
    client = AkixiClient(akixi_http, akixi_settings(akixi_password="wrong-password-1"), clock=clock)
    with pytest.raises(AkixiAuthenticationError) as caught:
        await client.omnichannel_info("axp-1")
    assert isinstance(caught.value, PermanentError) and caught.value.code == 10307
    assert simulator.operations(include_session=True) == SESSION_OPS
    # Logins are paused: later calls wait without touching Akixi.
    with pytest.raises(AkixiLoginSuspended) as paused:
        await client.omnichannel_info("axp-1")
    assert isinstance(paused.value, RetryableError) and paused.value.retry_after_s == 900.0
    assert len(simulator.calls("Authenticate")) == 1 and len(simulator.log) == 2
    clock.advance(901)
    with pytest.raises(AkixiAuthenticationError):
        await client.omnichannel_info("axp-1")
    assert len(simulator.calls("Authenticate")) == 2


async def test_wrong_password_scheme_is_refused_like_a_wrong_password(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator
) -> None:
    client = AkixiClient(akixi_http, akixi_settings(akixi_password_scheme="md5-nonce"))
    with pytest.raises(AkixiAuthenticationError):
        await client.omnichannel_list()
    assert simulator.calls("Authenticate")[0].code == 10307


async def test_concurrent_calls_share_one_login(
    client: AkixiClient, simulator: AkixiSimulator
) -> None:
    for index in range(5):
        simulator.add_entry(f"axp-{index}", description=f"Entry {index}")
    entries = await asyncio.gather(*(client.omnichannel_info(f"axp-{i}") for i in range(5)))
    assert [entry.description for entry in entries] == [f"Entry {i}" for i in range(5)]
    assert simulator.operations(include_session=True).count("CreateSession") == 1
    assert len({call.invoke_id for call in simulator.log}) == len(simulator.log)


async def test_akixi_down_is_retryable(client: AkixiClient, simulator: AkixiSimulator) -> None:
    simulator.down = True
    with pytest.raises(RetryableError) as caught:
        await client.omnichannel_info("axp-1")
    assert caught.value.http_status == 503 and caught.value.retry_after_s == 30.0
    simulator.down = False
    simulator.add_entry("axp-1", description="Sales")
    assert (await client.omnichannel_info("axp-1")).description == "Sales"


async def test_timeouts_are_throttled_and_connect_errors_retryable() -> None:
    with respx.mock() as mock:
        route = mock.post(AKIXI_URL)
        async with httpx.AsyncClient() as http:
            client = AkixiClient(http, akixi_settings())
            route.side_effect = httpx.ReadTimeout("slow")
            with pytest.raises(ThrottledError):
                await client.omnichannel_list()
            route.side_effect = httpx.ConnectError("refused")
            with pytest.raises(RetryableError) as caught:
                await client.omnichannel_list()
            assert not isinstance(caught.value, ThrottledError)


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (10104, True),
        (10105, True),
        (10000, True),
        (10103, True),
        (10511, False),
        (11131, False),
        (10001, False),
        (12004, False),
    ],
)
async def test_fail_codes_are_classified(
    client: AkixiClient, simulator: AkixiSimulator, code: int, retryable: bool
) -> None:
    simulator.fail_next("OmnichannelIntList", code)
    with pytest.raises(RetryableError if retryable else PermanentError) as caught:
        await client.omnichannel_list()
    assert caught.value.code == code
    assert caught.value.response_excerpt and str(code) in caught.value.response_excerpt
    assert caught.value.akixi_message


async def test_http_500_with_an_akixi_fail_body_uses_the_code() -> None:
    fail = (
        b'<Response Result="Fail"><Fail><ErrorCode>12002</ErrorCode>'
        b"<ErrorMessage>not found</ErrorMessage></Fail></Response>"
    )
    with respx.mock() as mock:
        mock.post(AKIXI_URL).mock(
            side_effect=[
                httpx.Response(
                    200,
                    text='<Response Result="Success"><InvokeID>00000</InvokeID><Success>'
                    '<Property Name="SessionID">S</Property>'
                    '<Property Name="Nonce">N</Property></Success></Response>',
                ),
                httpx.Response(
                    200, text='<Response Result="Success"><InvokeID>00001</InvokeID></Response>'
                ),
                httpx.Response(500, content=fail),
            ]
        )
        async with httpx.AsyncClient() as http:
            with pytest.raises(AkixiEntryNotFound):
                await AkixiClient(http, akixi_settings()).omnichannel_info("axp-1")


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY])
async def test_hostile_xml_bodies_are_refused(body: bytes) -> None:
    with respx.mock() as mock:
        mock.post(AKIXI_URL).mock(return_value=httpx.Response(200, content=body))
        async with httpx.AsyncClient() as http:
            with pytest.raises(AkixiUnsafeXml) as caught:
                await AkixiClient(http, akixi_settings()).omnichannel_list()
    assert isinstance(caught.value, PermanentError)
    assert "root:" not in (caught.value.response_excerpt or "")


async def test_a_proxy_page_is_a_retryable_protocol_error() -> None:
    with respx.mock() as mock:
        mock.post(AKIXI_URL).mock(return_value=httpx.Response(200, text="<html>maintenance</html>"))
        async with httpx.AsyncClient() as http:
            with pytest.raises(AkixiProtocolError) as caught:
                await AkixiClient(http, akixi_settings()).omnichannel_list()
    assert isinstance(caught.value, RetryableError)


async def test_mismatched_invoke_id_is_refused() -> None:
    with respx.mock() as mock:
        mock.post(AKIXI_URL).mock(
            return_value=httpx.Response(
                200, text='<Response Result="Success"><InvokeID>00042</InvokeID></Response>'
            )
        )
        async with httpx.AsyncClient() as http:
            with pytest.raises(AkixiProtocolError, match="InvokeID"):
                await AkixiClient(http, akixi_settings()).omnichannel_list()


async def test_invoke_id_wraps_on_the_wire(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator
) -> None:
    client = AkixiClient(akixi_http, akixi_settings(), invoke_ids=InvokeIdCounter(start=99_999))
    await client.omnichannel_list()
    assert [call.invoke_id for call in simulator.log] == ["99999", "00000", "00001"]
    assert all(call.result == "Success" for call in simulator.log)


async def test_list_pages_with_offset_and_limit_until_a_short_page(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator
) -> None:
    for index in range(5):
        simulator.add_entry(f"axp-{index}", description=f"Entry {index}")
    client = AkixiClient(akixi_http, akixi_settings(akixi_list_page_size=2))
    entries = await client.omnichannel_list()
    assert [entry.unique_id for entry in entries] == [f"axp-{i}" for i in range(5)]
    assert all(entry.comms_enabled is True for entry in entries)
    pages = simulator.calls("OmnichannelIntList")
    assert [(page.offset, page.limit) for page in pages] == [(0, 2), (2, 2), (4, 2)]
    assert pages[0].payload == {
        "PartitionGUID": SEED_PARTITION_GUID,
        "OmniChannelIntFields": "UniqueID,PartitionGUID,TelSysID,PartIDInTelSys,CommsEnabled",
    }


async def test_list_by_telephony_server_scope(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator
) -> None:
    simulator.add_entry("axp-1", description="Sales")
    client = AkixiClient(
        akixi_http,
        akixi_settings(
            akixi_partition_guid=None, akixi_telsys_id="100100", akixi_part_id_in_telsys="2"
        ),
    )
    assert [entry.unique_id for entry in await client.omnichannel_list()] == ["axp-1"]
    assert simulator.calls("OmnichannelIntList")[0].payload["TelSysID"] == "100100"
    wrong = AkixiClient(
        akixi_http,
        akixi_settings(
            akixi_partition_guid=None, akixi_telsys_id="999", akixi_part_id_in_telsys="2"
        ),
    )
    with pytest.raises(PermanentError) as caught:
        await wrong.omnichannel_list()
    assert caught.value.code == 11013


async def test_values_round_trip_escaped(client: AkixiClient, simulator: AkixiSimulator) -> None:
    name = 'Sales & "Support" <EU>'
    await client.omnichannel_add(
        {
            "UniqueID": "axp-x",
            "PartitionGUID": SEED_PARTITION_GUID,
            "IntegrationType": "LiveChat",
            "Description": name,
        }
    )
    assert simulator.entries["axp-x"]["Description"] == name
    assert (await client.omnichannel_info("axp-x")).description == name


async def test_missing_configuration_is_permanent(
    akixi_http: httpx.AsyncClient, simulator: AkixiSimulator
) -> None:
    client = AkixiClient(akixi_http, akixi_settings(akixi_password=None))
    with pytest.raises(AkixiConfigError):
        await client.omnichannel_info("axp-1")
    unscoped = AkixiClient(akixi_http, akixi_settings(akixi_partition_guid=None))
    with pytest.raises(AkixiConfigError, match="PARTITION"):
        await unscoped.omnichannel_list()
    assert simulator.log == []


async def test_session_names_and_the_digest_are_settings(akixi_http, simulator) -> None:
    """Names and hash the readable docs cut off: a tenant's real ones need no code change."""
    renamed = {
        "session_id_name": "Session",
        "nonce_name": "Challenge",
        "user_property": "LoginName",
        "password_property": "PasswordHash",
        "password_digest_input": "{user}:{nonce}:{password}",
        "password_digest_encoding": "base64",
    }
    for name, value in renamed.items():
        setattr(simulator, name, value)
    settings = akixi_settings(
        **{f"akixi_{k}": v for k, v in renamed.items() if k.startswith("password_digest")},
        akixi_session_id_name="Session",
        akixi_nonce_name="Challenge",
        akixi_auth_user_property="LoginName",
        akixi_auth_password_property="PasswordHash",
    )
    client = AkixiClient(akixi_http, settings)
    await client.omnichannel_list()
    authenticate = simulator.calls("Authenticate")[0]
    assert authenticate.result == "Success"
    assert set(authenticate.payload) == {"LoginName", "PasswordHash"}


async def test_default_names_against_a_renamed_session_say_which_setting(
    akixi_http, simulator
) -> None:
    simulator.session_id_name, simulator.nonce_name = "Session", "Challenge"
    with pytest.raises(AkixiProtocolError, match="BRIDGE_AKIXI_SESSION_ID_NAME") as caught:
        await AkixiClient(akixi_http, akixi_settings()).omnichannel_list()
    # The session values are masked in the excerpt under their configured names too.
    assert caught.value.response_excerpt is not None
    renamed = masked_excerpt(
        b'<Success><Property Name="Session">S-123</Property><Challenge>c-456</Challenge></Success>',
        secret_names=("Session", "Challenge"),
    )
    assert "S-123" not in renamed and "c-456" not in renamed
