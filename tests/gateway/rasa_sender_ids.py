"""Runs Rasa 3.6's own channel connectors on webhook requests and records the sender id
each one starts a turn with. Run in the Rasa venv (Python 3.10) by test_rasa_parity.py:

    .venvs/rasa/bin/python tests/gateway/rasa_sender_ids.py senders.json < cases.json

Input: [{"id", "channel", "body_b64", "content_type", "options"}]; output, in the file
named: {id: sender or null}. Each request goes through a real Sanic app (its ASGI
interface, so Sanic's own request parsing: request.json, request.form) with the
connector's blueprint registered as `rasa run` registers it. Only what would leave the
machine is replaced: Telegram's setWebhook/getMe, Messenger's sender actions,
Rocket.Chat's login, Bot Framework's JWT keys and check. The local signature checks,
Slack's and Messenger's, run for real on signed requests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
from types import SimpleNamespace
from typing import Any

from rasa.core.channels import channel as rasa_channel
from rasa.core.channels.botframework import BotFrameworkInput
from rasa.core.channels.callback import CallbackInput
from rasa.core.channels.facebook import FacebookInput, MessengerBot
from rasa.core.channels.hangouts import HangoutsInput
from rasa.core.channels.mattermost import MattermostInput
from rasa.core.channels.rest import RestInput
from rasa.core.channels.rocketchat import RocketChatInput
from rasa.core.channels.slack import SlackInput
from rasa.core.channels.telegram import TelegramInput, TelegramOutput
from rasa.core.channels.twilio import TwilioInput
from sanic import Sanic

SLACK_SECRET = "slack-signing-secret"
FB_SECRET = "fb-app-secret"
TELEGRAM_BOT = "botfleet_test_bot"


async def _no_network(*args: Any, **kwargs: Any) -> Any:
    return True


async def _telegram_me(self: Any) -> Any:
    return SimpleNamespace(username=TELEGRAM_BOT)


TelegramOutput.set_webhook = _no_network  # type: ignore[method-assign]
TelegramOutput.get_me = _telegram_me  # type: ignore[method-assign]
MessengerBot.send_action = _no_network  # type: ignore[method-assign]
BotFrameworkInput._validate_auth = lambda self, header: None  # type: ignore[method-assign]
BotFrameworkInput._update_cached_jwk_keys = lambda self: None  # type: ignore[method-assign]
RocketChatInput.get_output_channel = lambda self: None  # type: ignore[method-assign]
# Sanic rewrites its request handler at each app's startup; test mode keeps the original
# so that one process can start one app per connector set-up.
Sanic.test_mode = True


def connector(channel: str, options: dict[str, Any]) -> Any:
    if channel == "rest":
        return RestInput()
    if channel == "callback":
        return CallbackInput.from_credentials({"url": "http://127.0.0.1:9/callback"})
    if channel == "slack":
        return SlackInput.from_credentials(
            {"slack_token": "xoxb-test", "slack_signing_secret": SLACK_SECRET, "slack_channel": None, **options}
        )
    if channel == "telegram":
        return TelegramInput.from_credentials(
            {"access_token": "123:abc", "verify": TELEGRAM_BOT, "webhook_url": "https://example.invalid/webhooks/telegram/webhook"}
        )
    if channel == "botframework":
        return BotFrameworkInput.from_credentials({"app_id": "app", "app_password": "secret"})
    if channel == "facebook":
        return FacebookInput.from_credentials({"verify": "verify", "secret": FB_SECRET, "page-access-token": "token"})
    if channel == "twilio":
        return TwilioInput.from_credentials({"account_sid": "AC00", "auth_token": "t", "twilio_number": "+15005550006"})
    if channel == "mattermost":
        return MattermostInput.from_credentials({"url": "http://127.0.0.1:9/api/v4", "token": "t", "webhook_url": "http://127.0.0.1:9/hook"})
    if channel == "rocketchat":
        return RocketChatInput.from_credentials({"user": "rasa-bot", "password": "p", "server_url": "http://127.0.0.1:9"})
    if channel == "hangouts":
        return HangoutsInput.from_credentials({})
    raise ValueError(f"no connector set up for {channel}")


def signed_headers(channel: str, body: bytes) -> dict[str, str]:
    if channel == "slack":
        timestamp = str(int(time.time()))
        digest = hmac.new(SLACK_SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}
    if channel == "facebook":
        return {"X-Hub-Signature": "sha1=" + hmac.new(FB_SECRET.encode(), body, hashlib.sha1).hexdigest()}
    return {}


async def asgi_post(app: Sanic, path: str, body: bytes, headers: dict[str, str]) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5005),
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def lifespan_startup(app: Sanic) -> None:
    messages = [{"type": "lifespan.startup"}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {}

    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    asyncio.get_running_loop().create_task(app(scope={"type": "lifespan", "asgi": {"version": "3.0"}}, receive=receive, send=send))
    await asyncio.wait_for(started.wait(), 30)


CURRENT: list[str] = []


async def on_new_message(message: Any) -> None:
    CURRENT.append(message.sender_id)


def app_key(case: dict[str, Any]) -> str:
    return json.dumps([case["channel"], case.get("options", {})], sort_keys=True)


def build_apps(cases: list[dict[str, Any]]) -> dict[str, Sanic]:
    """One app per connector set-up (Slack granularities differ), built before the event
    loop runs, as `rasa run` does (Telegram's connector calls asyncio.run while registering)."""
    apps: dict[str, Sanic] = {}
    for case in cases:
        key = app_key(case)
        if key not in apps:
            app = Sanic(f"parity{len(apps)}")
            app.ctx.agent = SimpleNamespace(handle_message=on_new_message)
            rasa_channel.register([connector(case["channel"], case.get("options", {}))], app, route="/webhooks/")
            apps[key] = app
    return apps


async def run(apps: dict[str, Sanic], cases: list[dict[str, Any]]) -> dict[str, str | None]:
    for app in apps.values():
        await lifespan_startup(app)
    results: dict[str, str | None] = {}
    for case in cases:
        body = base64.b64decode(case["body_b64"])
        headers = {"content-type": case["content_type"], "content-length": str(len(body)), **signed_headers(case["channel"], body)}
        CURRENT.clear()
        status = await asgi_post(apps[app_key(case)], f"/webhooks/{case['channel']}/webhook", body, headers)
        await asyncio.sleep(0.05)  # Slack's connector starts the turn in a background task
        results[case["id"]] = CURRENT[0] if CURRENT else None
        print(f"{case['id']}: status {status}, senders {CURRENT}", file=sys.stderr)
    return results


def main() -> None:
    cases = json.load(sys.stdin)
    apps = build_apps(cases)
    results = asyncio.run(run(apps, cases))
    # A file, not stdout: Sanic's loggers write there.
    with open(sys.argv[1], "w") as answer:
        json.dump(results, answer)


if __name__ == "__main__":
    main()
