"""``validate_webhook``: what a job-creating request may ask for as its webhook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.settings import Settings
from gateway.webhooks import validate_webhook
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


async def test_a_public_target_gets_the_default_event(settings: Settings) -> None:
    hook = await validate_webhook(
        "http://93.184.216.34/hooks?x=1", None, settings.webhook_allow_list
    )

    assert hook == {"url": "http://93.184.216.34/hooks?x=1", "events": ["completed"]}


async def test_events_are_kept_in_a_job_s_order_without_repeats(settings: Settings) -> None:
    hook = await validate_webhook(
        "https://93.184.216.34/",
        ["completed", "started", "progress", "started"],
        settings.webhook_allow_list,
    )

    assert hook is not None and hook["events"] == ["started", "progress", "completed"]


async def test_no_webhook_is_none(settings: Settings) -> None:
    assert await validate_webhook(None, None, settings.webhook_allow_list) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:4093/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8080/hook",  # a name that resolves to loopback
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://100.64.1.2/hook",
    ],
)
async def test_private_targets_are_refused_naming_webhook_url(url: str, settings: Settings) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await validate_webhook(url, ["completed"], settings.webhook_allow_list)

    error = caught.value
    assert error.status_code == 400 and error.param == "webhook_url"
    assert error.body()["error"]["param"] == "webhook_url"


async def test_the_allow_list_admits_a_private_target(tmp_path: Path) -> None:
    allowing = make_settings(tmp_path, webhook_allow="127.0.0.1, hooks.internal")

    hook = await validate_webhook("http://127.0.0.1:9000/hook", None, allowing.webhook_allow_list)

    assert hook == {"url": "http://127.0.0.1:9000/hook", "events": ["completed"]}
    with pytest.raises(InvalidRequest):
        await validate_webhook("http://10.0.0.1/hook", None, allowing.webhook_allow_list)


@pytest.mark.parametrize(
    ("url", "events", "param"),
    [
        (42, None, "webhook_url"),
        ("", None, "webhook_url"),
        ("ftp://93.184.216.34/x", None, "webhook_url"),
        ("javascript:alert(1)", None, "webhook_url"),
        ("https://" + "a" * 2050 + ".com/", None, "webhook_url"),
        (None, ["completed"], "webhook_url"),
        ("https://93.184.216.34/", "completed", "webhook_events"),
        ("https://93.184.216.34/", ["finished"], "webhook_events"),
        ("https://93.184.216.34/", [1], "webhook_events"),
        ("https://93.184.216.34/", [], "webhook_events"),
    ],
)
async def test_malformed_webhooks_are_refused_naming_the_field(
    url: Any, events: Any, param: str, settings: Settings
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await validate_webhook(url, events, settings.webhook_allow_list)

    assert caught.value.param == param


def test_a_malformed_allow_list_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="webhook_allow"):
        make_settings(tmp_path, webhook_allow="10.0.0.0/40")
