"""One adapter per chat channel Rasa 3.6 serves: its webhook routes, and the conversation
id Rasa's own connector will compute from the same request.

The functions mirror `rasa/core/channels/<name>.py` of Rasa 3.6.21 (cited per function),
so that the gateway's stickiness key is Rasa's sender id: two requests Rasa files under one
tracker go to one track. They return None where the connector handles no user message
(verification challenges, bot echoes, non-message events): those requests go to stable.
They raise `MalformedRequest` where the connector itself would fail on the input (Rasa
answers such requests with a 500); the gateway answers 400 instead.

socket.io is not here: its conversations are Engine.IO sessions (see `socketio_proxy`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs

# rasa.core.channels.channel.DEFAULT_SENDER_ID: what UserMessage uses for a None sender.
DEFAULT_SENDER_ID = "default"
WEBHOOKS_PREFIX = "/webhooks"
SLACK_GRANULARITIES = ("sender", "channel", "thread")

ConversationIdFunction = Callable[[bytes, str], "str | None"]


class MalformedRequest(ValueError):
    """The body cannot be what the channel's platform sends (answered with 400)."""


@dataclass(frozen=True)
class ChannelAdapter:
    """A channel's routes under /webhooks/<name>, and how to find its conversation.

    `routes` maps a path below the channel prefix to the methods Rasa's blueprint accepts
    there; `conversation_routes` are those whose requests carry a conversation (the
    others, health checks and set-up calls, go to stable)."""

    name: str
    conversation_id: ConversationIdFunction
    routes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    conversation_routes: frozenset[str] = frozenset({"/webhook"})
    # Requests the connector acknowledges without a turn (Slack's ignored retries).
    skips_routing: Callable[[Mapping[str, str]], bool] = lambda headers: False

    @property
    def prefix(self) -> str:
        return f"{WEBHOOKS_PREFIX}/{self.name}"


def _json_document(body: bytes) -> Any:
    """The JSON in a body, as Sanic's `request.json` parses it regardless of the
    content type. Anything that is not valid UTF-8 JSON is malformed."""
    if not body.strip():
        raise MalformedRequest("the body is empty; a JSON object is expected")
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise MalformedRequest("the body is not valid UTF-8") from error
    except RecursionError as error:
        raise MalformedRequest("the JSON body is nested too deeply") from error
    except ValueError as error:  # JSONDecodeError, and ints longer than Python's digit limit
        raise MalformedRequest(f"the body is not valid JSON: {error}") from error


def _json_object(body: bytes) -> dict[str, Any]:
    document = _json_document(body)
    if not isinstance(document, dict):
        raise MalformedRequest("the JSON body must be an object")
    return document


def _object(value: Any) -> dict[str, Any]:
    """A nested value that should be an object: anything else counts as absent, as
    `.get()` chains in the connectors would find nothing there."""
    return value if isinstance(value, dict) else {}


def _sender(value: Any) -> str:
    """UserMessage does `str(sender_id)`; JSON ids may be numbers."""
    return value if isinstance(value, str) else str(value)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _form(body: bytes) -> dict[str, list[str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedRequest("the form body is not valid UTF-8") from error
    return parse_qs(text, keep_blank_values=True)


# --- rest and callback --------------------------------------------------------------------


def rest_conversation_id(body: bytes, content_type: str) -> str | None:
    """rasa.core.channels.rest.RestInput._extract_sender: `req.json.get("sender", None)`,
    and UserMessage turns None into "default"."""
    sender = _json_object(body).get("sender")
    return DEFAULT_SENDER_ID if sender is None else _sender(sender)


# CallbackInput subclasses RestInput and uses the same _extract_sender.
callback_conversation_id = rest_conversation_id


# --- slack ---------------------------------------------------------------------------------


def slack_conversation_id(body: bytes, content_type: str, granularity: str = "sender") -> str | None:
    """rasa.core.channels.slack.SlackInput.blueprint's webhook and _get_conversation_id.

    JSON (Events API): `event.user`, extended by channel (and thread) per the connector's
    `conversation_granularity`; only for user messages the connector processes (not the
    url_verification challenge, bot messages or other events). Form-encoded (interactive
    components): `payload.user.id` of supported interactive actions that carry a value.
    The connector compares the content type exactly, and so does this."""
    if content_type == "application/json":
        output = _json_object(body)
        if "challenge" in output or not _slack_is_user_message(output):
            return None
        event = _object(output.get("event"))
        thread_id = event.get("thread_ts", event.get("ts"))
        return _slack_granular_id(event.get("user", ""), event.get("channel"), thread_id, granularity)
    if content_type == "application/x-www-form-urlencoded":
        form = _form(body)
        if "payload" not in form:
            raise MalformedRequest("a form-encoded Slack request needs a 'payload' field")
        payload = _json_object(form["payload"][0].encode())
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            return None
        action = actions[0]
        if action.get("type") not in _SLACK_INTERACTIVE_TYPES or _slack_interactive_value(action) is None:
            return None
        user_id = _object(payload.get("user")).get("id")
        if user_id is None:
            raise MalformedRequest("a Slack interactive payload needs user.id")
        message = _object(payload.get("message"))
        thread_id = message.get("thread_ts", message.get("ts"))
        return _slack_granular_id(user_id, _object(payload.get("channel")).get("id"), thread_id, granularity)
    return None


# SlackInput._is_interactive_message's supported list.
_SLACK_INTERACTIVE_TYPES = frozenset(
    {
        "button", "select", "static_select", "external_select", "conversations_select",
        "users_select", "channels_select", "overflow", "datepicker",
    }
)  # fmt: skip


def _slack_is_user_message(output: dict[str, Any]) -> bool:
    """SlackInput._is_user_message."""
    event = output.get("event")
    if not isinstance(event, dict):
        return False
    return event.get("type") in ("message", "app_mention") and bool(event.get("text")) and not event.get("bot_id")


def _slack_interactive_value(action: dict[str, Any]) -> Any:
    """SlackInput._get_interactive_response: the text the click sends (None: no turn)."""
    kind = action["type"]
    if kind == "button":
        return action.get("value")
    if kind == "select":
        options = action.get("selected_options") or [{}]
        return _object(options[0] if isinstance(options, list) else {}).get("value")
    if kind in ("static_select", "external_select", "overflow"):
        return _object(action.get("selected_option")).get("value")
    return action.get(
        {
            "conversations_select": "selected_conversation",
            "users_select": "selected_user",
            "channels_select": "selected_channel",
            "datepicker": "selected_date",
        }[kind]
    )


def _slack_granular_id(sender: Any, channel: Any, thread: Any, granularity: str) -> str:
    """SlackInput._get_conversation_id."""
    conversation = _sender(sender)
    if granularity == "channel" and sender and channel:
        conversation = f"{conversation}_{channel}"
    if granularity == "thread" and sender and channel and thread:
        conversation = f"{conversation}_{channel}_{thread}"
    return conversation


def slack_skips_routing(headers: Mapping[str, str], ignored_reasons: tuple[str, ...] = ("http_timeout",)) -> bool:
    """SlackInput.process_message answers retries for these reasons at once with
    201 and X-Slack-No-Retry, without a turn; they go to stable."""
    return bool(headers.get("x-slack-retry-num")) and headers.get("x-slack-retry-reason") in ignored_reasons


# --- telegram ------------------------------------------------------------------------------


def telegram_conversation_id(body: bytes, content_type: str) -> str | None:
    """rasa.core.channels.telegram.TelegramInput.blueprint's message(): `msg.chat.id` of
    the callback query's message (buttons), else of the edited message, else of the
    message when it has text or a location. The connector also accepts the update as a
    JSON string holding JSON."""
    update = _json_document(body)
    if isinstance(update, str):
        update = _json_document(update.encode())
    if not isinstance(update, dict):
        raise MalformedRequest("a Telegram update must be a JSON object")
    if update.get("callback_query") is not None:
        message = _object(_object(update["callback_query"]).get("message"))
    elif update.get("edited_message") is not None:
        message = _object(update["edited_message"])
    else:
        message = _object(update.get("message"))
        if message.get("text") is None and message.get("location") is None:
            return None
    chat_id = _object(message.get("chat")).get("id")
    if chat_id is None or isinstance(chat_id, (dict, list, bool)):
        raise MalformedRequest("a Telegram message needs chat.id")
    return _sender(chat_id)


# --- botframework --------------------------------------------------------------------------


def botframework_conversation_id(body: bytes, content_type: str) -> str | None:
    """rasa.core.channels.botframework.BotFrameworkInput.blueprint's webhook:
    `postdata["from"]["id"]` of activities of type "message"."""
    activity = _json_object(body)
    if activity.get("type") != "message":
        return None
    sender = _object(activity.get("from")).get("id")
    if sender is None:
        raise MalformedRequest("a Bot Framework message activity needs from.id")
    return _sender(sender)


# --- facebook ------------------------------------------------------------------------------


def facebook_conversation_id(body: bytes, content_type: str) -> str | None:
    """rasa.core.channels.facebook.Messenger.handle: the first `entry[].messaging[]` event
    with a message or a postback is handled (the rest are dropped), and its sender is
    `sender.id` (get_user_id, default "")."""
    payload = _json_object(body)
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise MalformedRequest("a Messenger webhook event needs an 'entry' list")
    for entry in entries:
        messaging = _object(entry).get("messaging")
        if not isinstance(messaging, list):
            continue
        for event in messaging:
            event = _object(event)
            if event.get("message") or event.get("postback"):
                return _sender(_object(event.get("sender")).get("id", ""))
    return None


# --- twilio --------------------------------------------------------------------------------


def twilio_conversation_id(body: bytes, content_type: str) -> str | None:
    """rasa.core.channels.twilio.TwilioInput.blueprint's message(): form field `From`.
    Sanic parses form bodies only for a form content type, so others carry no sender."""
    if _media_type(content_type) != "application/x-www-form-urlencoded":
        return None
    senders = _form(body).get("From")
    return senders[0] if senders else None


# --- mattermost ----------------------------------------------------------------------------


def mattermost_conversation_id(body: bytes, content_type: str) -> str | None:
    """rasa.core.channels.mattermost.MattermostInput.blueprint's webhook: `user_id` of
    outgoing-webhook messages (with `trigger_word`) and of button actions (`context`)."""
    output = _json_document(body)
    if not output:
        return None
    if not isinstance(output, dict):
        raise MalformedRequest("the JSON body must be an object")
    if "trigger_word" not in output and "context" not in output:
        return None
    if output.get("user_id") is None:
        raise MalformedRequest("a Mattermost message needs user_id")
    return _sender(output["user_id"])


# --- rocketchat ----------------------------------------------------------------------------


def rocketchat_conversation_id(body: bytes, content_type: str) -> str | None:
    """rasa.core.channels.rocketchat.RocketChatInput.blueprint's webhook: the room is the
    sender, `channel_id` of channel messages and `_id` of livechat ("visitor") ones."""
    output = _json_document(body)
    if not output:
        return None
    if not isinstance(output, dict):
        raise MalformedRequest("the JSON body must be an object")
    recipient = output.get("channel_id") if "visitor" not in output else output.get("_id")
    return DEFAULT_SENDER_ID if recipient is None else _sender(recipient)


# --- webexteams ----------------------------------------------------------------------------


def webexteams_conversation_id(body: bytes, content_type: str) -> str | None:
    """rasa.core.channels.webexteams.WebexTeamsInput.blueprint's webhook: the sender is
    the fetched message's `roomId`, which the webhook's `data.roomId` already carries
    (Webex "messages created" webhooks)."""
    room = _object(_json_object(body).get("data")).get("roomId")
    return None if room is None else _sender(room)


# --- hangouts ------------------------------------------------------------------------------


def hangouts_conversation_id(body: bytes, content_type: str) -> str | None:
    """rasa.core.channels.hangouts.HangoutsInput._extract_sender: the sender's
    `displayName` (message.sender for MESSAGE events, user for the others)."""
    event = _json_object(body)
    if event.get("type") == "MESSAGE":
        name = _object(_object(event.get("message")).get("sender")).get("displayName")
    else:
        name = _object(event.get("user")).get("displayName")
    if name is None:
        raise MalformedRequest("a Google Chat event needs the sender's displayName")
    return _sender(name)


# --- the table ------------------------------------------------------------------------------

_GET, _POST, _BOTH = frozenset({"GET"}), frozenset({"POST"}), frozenset({"GET", "POST"})


def build_adapters(slack_granularity: str = "sender") -> dict[str, ChannelAdapter]:
    """Every channel by name; routes as each connector's blueprint registers them."""
    if slack_granularity not in SLACK_GRANULARITIES:
        raise ValueError(f"slack conversation granularity must be one of {SLACK_GRANULARITIES}")

    def adapter(name: str, function: ConversationIdFunction, webhook: frozenset[str], **extra: Any) -> ChannelAdapter:
        routes = {"/": _GET, "/webhook": webhook, **extra.pop("routes", {})}
        return ChannelAdapter(name=name, conversation_id=function, routes=routes, **extra)

    adapters = [
        adapter("rest", rest_conversation_id, _POST),
        adapter("callback", callback_conversation_id, _POST),
        # GET on /webhook reaches the same handler; it carries no conversation.
        adapter(
            "slack",
            partial(slack_conversation_id, granularity=slack_granularity),
            _BOTH,
            skips_routing=slack_skips_routing,
        ),
        adapter("telegram", telegram_conversation_id, _BOTH, routes={"/set_webhook": _BOTH}),
        adapter("botframework", botframework_conversation_id, _POST),
        # GET /webhook is Messenger's hub.challenge verification.
        adapter("facebook", facebook_conversation_id, _BOTH),
        adapter("twilio", twilio_conversation_id, _POST),
        adapter("mattermost", mattermost_conversation_id, _POST),
        adapter("rocketchat", rocketchat_conversation_id, _BOTH),
        adapter("webexteams", webexteams_conversation_id, _POST),
        adapter("hangouts", hangouts_conversation_id, _POST),
    ]
    return {a.name: a for a in adapters}


@dataclass(frozen=True)
class Match:
    adapter: ChannelAdapter
    subpath: str
    methods: frozenset[str]


def match_path(adapters: Mapping[str, ChannelAdapter], path: str) -> Match | None:
    """The adapter and route for a request path, or None (the gateway answers 404)."""
    prefix = WEBHOOKS_PREFIX + "/"
    if not path.startswith(prefix):
        return None
    name, _, rest = path[len(prefix) :].partition("/")
    adapter = adapters.get(name)
    if adapter is None:
        return None
    subpath = "/" + rest
    methods = adapter.routes.get(subpath)
    if methods is None:
        return None
    return Match(adapter=adapter, subpath=subpath, methods=methods)


def needs_conversation(match: Match, method: str) -> bool:
    """Health checks, GET verification calls and Telegram's set_webhook carry none."""
    return method == "POST" and match.subpath in match.adapter.conversation_routes
