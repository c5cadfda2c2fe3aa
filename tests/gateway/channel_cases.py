"""Realistic webhook requests per channel, in each platform's documented format, and the
sender id Rasa's connector files them under (None: the connector starts no turn).

Shared by test_adapters.py (the gateway's adapters) and test_rasa_parity.py (Rasa's own
connectors, run on the same bytes in the Rasa venv).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Case:
    id: str
    channel: str
    body: bytes
    expected: str | None
    content_type: str = JSON
    options: dict[str, Any] = field(default_factory=dict)  # connector credentials (slack granularity)


def js(document: Any) -> bytes:
    return json.dumps(document).encode()


# https://api.slack.com/apis/connections/events-api (event_callback envelope)
SLACK_IM = {
    "token": "XXYYZZ",
    "team_id": "T061EG9R6",
    "api_app_id": "A0PNCHHK2",
    "event": {
        "type": "message",
        "channel": "D024BE91L",
        "user": "U2147483697",
        "text": "Hello hello can you hear me?",
        "ts": "1355517523.000005",
        "event_ts": "1355517523.000005",
        "channel_type": "im",
    },
    "type": "event_callback",
    "authed_users": ["U0LAN0Z89"],
    "event_id": "Ev08MFMKH6",
    "event_time": 1355517523,
}
SLACK_THREAD_MENTION = {
    **SLACK_IM,
    "event": {
        "type": "app_mention",
        "channel": "C0LAN2Q65",
        "user": "W021FGA1Z",
        "text": "<@U0LAN0Z89> is it everything a river should be?",
        "ts": "1515449522.000016",
        "thread_ts": "1515449438.000011",
        "event_ts": "1515449522000016",
    },
}
# https://api.slack.com/reference/interaction-payloads/block-actions
SLACK_BLOCK_ACTIONS = {
    "type": "block_actions",
    "user": {"id": "U0CA5", "username": "Amy McGee", "name": "Amy McGee", "team_id": "T3MDE"},
    "api_app_id": "A0CA5",
    "token": "Shh_its_a_seekrit",
    "container": {"type": "message", "text": "The contents of the original message where the action originated"},
    "trigger_id": "12466734323.1395872398",
    "team": {"id": "T0CAG", "domain": "acme-creamery"},
    "channel": {"id": "C0CA5", "name": "general"},
    "message": {"ts": "1548261231.000200", "text": "pick one"},
    "response_url": "https://www.postresponsestothisurl.com",
    "actions": [
        {
            "action_id": "WaXA",
            "block_id": "=qXel",
            "text": {"type": "plain_text", "text": "View", "emoji": True},
            "value": "/affirm",
            "type": "button",
            "action_ts": "1548426417.840180",
        }
    ],
}
SLACK_LINK_BUTTON = {
    **SLACK_BLOCK_ACTIONS,
    "actions": [{"action_id": "link", "type": "button", "url": "https://example.com", "text": {"type": "plain_text", "text": "Docs"}}],
}

# https://core.telegram.org/bots/api#update
TELEGRAM_CHAT = {"last_name": "Test Lastname", "id": 1111111, "type": "private", "first_name": "Test Firstname", "username": "Testusername"}
TELEGRAM_FROM = {"last_name": "Test Lastname", "id": 1111111, "first_name": "Test Firstname", "username": "Testusername", "is_bot": False}
TELEGRAM_MESSAGE = {"update_id": 10000, "message": {"date": 1441645532, "chat": TELEGRAM_CHAT, "message_id": 1365, "from": TELEGRAM_FROM, "text": "/start"}}
TELEGRAM_CALLBACK = {
    "update_id": 10001,
    "callback_query": {
        "id": "4382bfdwdsb323b2d9",
        "from": TELEGRAM_FROM,
        "data": "/greet",
        "chat_instance": "-1234",
        "message": {"message_id": 1366, "date": 1441645533, "chat": {"id": -1001234567890, "type": "supergroup", "title": "Group"}, "text": "pick one"},
    },
}
TELEGRAM_EDITED = {
    "update_id": 10002,
    "edited_message": {"date": 1441645532, "edit_date": 1441645600, "chat": {**TELEGRAM_CHAT, "id": 2222222}, "message_id": 1365, "from": TELEGRAM_FROM, "text": "/start again"},
}
TELEGRAM_LOCATION = {
    "update_id": 10003,
    "message": {"date": 1441645532, "chat": {**TELEGRAM_CHAT, "id": 3333333}, "message_id": 1367, "from": TELEGRAM_FROM, "location": {"latitude": 52.52, "longitude": 13.405}},
}
TELEGRAM_STICKER = {
    "update_id": 10004,
    "message": {
        "date": 1441645532,
        "chat": TELEGRAM_CHAT,
        "message_id": 1368,
        "from": TELEGRAM_FROM,
        "sticker": {"file_id": "CAADAgADQAADyIsGAAE7MpzFPFQX5QI", "file_unique_id": "AgADQAAD", "width": 512, "height": 512, "is_animated": False},
    },
}

# https://learn.microsoft.com/en-us/azure/bot-service/rest-api/bot-framework-rest-connector-api-reference#activity-object
BOTFRAMEWORK_MESSAGE = {
    "type": "message",
    "id": "bf3cc9a2f5de",
    "timestamp": "2016-10-19T20:17:52.2891902Z",
    "serviceUrl": "https://smba.trafficmanager.net/apis",
    "channelId": "msteams",
    "from": {"id": "29:1XJKJMvc5GBtc2JwZq0oj8tHZmzrQgFmB39ATiQWA85gQtHieVkKilBZ9XHoq9j7Zaqt7CZ-NJWi7me2kHTL3Bw", "name": "Megan Bowen"},
    "conversation": {"id": "a:17I0kl8EkpE1O9PH5TWrzrLNwnWWcfrU7QZjKR0WSfOpzbf", "conversationType": "personal"},
    "recipient": {"id": "28:c9e8c047-2a74-40a2-b28a-b162d5f5327c", "name": "Teams TestBot"},
    "text": "Hello",
}

# https://developers.facebook.com/docs/messenger-platform/webhooks
FACEBOOK_MESSAGE = {
    "object": "page",
    "entry": [
        {
            "id": "PAGE_ID",
            "time": 1458692752478,
            "messaging": [
                {
                    "sender": {"id": "1254459154682919"},
                    "recipient": {"id": "PAGE_ID"},
                    "timestamp": 1458692752478,
                    "message": {"mid": "mid.1457764197618:41d102a3e1ae206a38", "text": "hello, world!"},
                }
            ],
        }
    ],
}
FACEBOOK_READ_THEN_POSTBACK = {
    "object": "page",
    "entry": [
        {
            "id": "PAGE_ID",
            "time": 1458692752478,
            "messaging": [
                {"sender": {"id": "1111"}, "recipient": {"id": "PAGE_ID"}, "timestamp": 1458668856451, "read": {"watermark": 1458668856253}},
                {
                    "sender": {"id": "2222"},
                    "recipient": {"id": "PAGE_ID"},
                    "timestamp": 1458692752478,
                    "postback": {"title": "Get Started", "payload": "/greet"},
                },
            ],
        }
    ],
}
FACEBOOK_DELIVERY = {
    "object": "page",
    "entry": [
        {
            "id": "PAGE_ID",
            "time": 1458692752478,
            "messaging": [{"sender": {"id": "1111"}, "recipient": {"id": "PAGE_ID"}, "delivery": {"mids": ["mid.1458668856218:ed81099e15d3f4f233"], "watermark": 1458668856253}}],
        }
    ],
}

# https://www.twilio.com/docs/messaging/guides/webhook-request
TWILIO_SMS = {
    "ToCountry": "US", "ToState": "CA", "SmsMessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f", "NumMedia": "0",
    "ToCity": "", "FromZip": "", "SmsSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f", "FromState": "CA",
    "SmsStatus": "received", "FromCity": "SAN FRANCISCO", "Body": "Hello ¡ there", "FromCountry": "US",
    "To": "+15017122661", "ToZip": "", "NumSegments": "1", "MessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
    "AccountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "From": "+15558675310", "ApiVersion": "2010-04-01",
}  # fmt: skip
TWILIO_WHATSAPP = {**TWILIO_SMS, "From": "whatsapp:+14155238886", "To": "whatsapp:+15005550006"}

# https://developers.mattermost.com/integrate/webhooks/outgoing/
MATTERMOST_TRIGGER = {
    "channel_id": "hawos4dqtby53pd64o4a4cmeoo", "channel_name": "town-square", "team_domain": "someteam",
    "team_id": "kwoknj9nwpypzgzy78wkw516qe", "post_id": "axdygg1957njfe5pu38saikdho", "text": "@bot some text here",
    "timestamp": "1445532266", "token": "zmigewsanbbsdf59xnmduzypjc", "trigger_word": "@bot",
    "user_id": "rnina9994bde8mua79zqcg5hmo", "user_name": "somename",
}  # fmt: skip
# Interactive message buttons post {user_id, channel_id, context}.
MATTERMOST_BUTTON = {"user_id": "rnina9994bde8mua79zqcg5hmo", "channel_id": "hawos4dqtby53pd64o4a4cmeoo", "context": {"action": "/greet"}}

# https://docs.rocket.chat/use-rocket.chat/workspace-administration/integrations (outgoing webhook)
ROCKETCHAT_CHANNEL = {
    "token": "G5j4qo2NsXwnPA8hT", "bot": False, "channel_id": "GENERAL", "message_id": "XB6bBNnJ4ZcGx2ckF",
    "timestamp": "2024-02-01T10:00:00.000Z", "user_id": "aobEdbYhXfu5hkeqG", "user_name": "alice", "text": "hello bot",
}  # fmt: skip
ROCKETCHAT_LIVECHAT = {
    "_id": "fasd6f5a4sd6f8a4sdf", "label": "title", "topic": "asiodojf", "type": "LivechatSession",
    "visitor": {"_id": "", "token": "iNKE8a6k6cjbqWhWd", "name": "Livechat Visitor", "username": "guest-4"},
    "messages": [{"username": "guest-4", "msg": "hi there", "ts": "2024-02-01T10:00:00.000Z"}],
}  # fmt: skip

# https://developer.webex.com/docs/api/guides/webhooks (messages created)
WEBEX_MESSAGE = {
    "id": "Y2lzY29zcGFyazovL3VzL1dFQkhPT0svZjRlNjA1NjAtNjYwMi00ZmIwLWEyNWEtOTQ5ODgxNjA5NDk3",
    "name": "New message in 'Project Unicorn' room",
    "resource": "messages",
    "event": "created",
    "ownedBy": "creator",
    "status": "active",
    "actorId": "Y2lzY29zcGFyazovL3VzL1BFT1BMRS9mNWIzNjE4Ny1jOGRkLTQ3MjctOGIyZi1mOWM0NDdmMjkwNDY",
    "data": {
        "id": "Y2lzY29zcGFyazovL3VzL01FU1NBR0UvOTJkYjNiZTAtNDNiZC0xMWU2LThhZTktZGQ1YjNkZmM1NjVk",
        "roomId": "Y2lzY29zcGFyazovL3VzL1JPT00vYmJjZWIxYWQtNDNmMS0zYjU4LTkxNDctZjE0YmIwYzRkMTU0",
        "personId": "Y2lzY29zcGFyazovL3VzL1BFT1BMRS9mNWIzNjE4Ny1jOGRkLTQ3MjctOGIyZi1mOWM0NDdmMjkwNDY",
        "personEmail": "matt@example.com",
        "created": "2015-10-18T14:26:16.000Z",
    },
}

# https://developers.google.com/workspace/chat/api/reference/rest/v1/Event
HANGOUTS_MESSAGE = {
    "type": "MESSAGE",
    "eventTime": "2017-03-02T19:02:59.910959Z",
    "space": {"name": "spaces/AAAAAAAAAAA", "displayName": "Chuck Norris Discussion Room", "type": "ROOM"},
    "message": {
        "name": "spaces/AAAAAAAAAAA/messages/CCCCCCCCCCC",
        "sender": {"name": "users/12345678901234567890", "displayName": "Chuck Norris", "email": "chuck@example.com", "type": "HUMAN"},
        "createTime": "2017-03-02T19:02:59.910959Z",
        "text": "@TestBot Violence is my last option.",
        "argumentText": " Violence is my last option.",
        "thread": {"name": "spaces/AAAAAAAAAAA/threads/BBBBBBBBBBB"},
    },
    "user": {"name": "users/12345678901234567890", "displayName": "Chuck Norris", "email": "chuck@example.com"},
}
HANGOUTS_CARD_CLICKED = {
    "type": "CARD_CLICKED",
    "eventTime": "2017-03-02T19:03:59.910959Z",
    "space": {"name": "spaces/DDDDDDDDDDD", "type": "DM"},
    "action": {"actionMethodName": "/greet", "parameters": []},
    "user": {"name": "users/98765432109876543210", "displayName": "Ada Lovelace"},
}

CASES: list[Case] = [
    Case("rest", "rest", js({"sender": "test_user", "message": "Hi there!"}), "test_user"),
    Case("rest-numeric-sender", "rest", js({"sender": 12345, "message": "Hi"}), "12345"),
    Case("rest-no-sender", "rest", js({"message": "Hi"}), "default"),
    Case("callback", "callback", js({"sender": "cb-user-7", "message": "Hi"}), "cb-user-7"),
    Case("slack-im", "slack", js(SLACK_IM), "U2147483697"),
    Case("slack-mention-channel", "slack", js(SLACK_THREAD_MENTION), "W021FGA1Z_C0LAN2Q65", options={"conversation_granularity": "channel"}),
    Case(
        "slack-mention-thread",
        "slack",
        js(SLACK_THREAD_MENTION),
        "W021FGA1Z_C0LAN2Q65_1515449438.000011",
        options={"conversation_granularity": "thread"},
    ),
    Case("slack-url-verification", "slack", js({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}), None),
    Case("slack-bot-message", "slack", js({**SLACK_IM, "event": {**SLACK_IM["event"], "bot_id": "B123"}}), None),
    Case("slack-block-actions", "slack", urlencode({"payload": json.dumps(SLACK_BLOCK_ACTIONS)}).encode(), "U0CA5", FORM),
    Case(
        "slack-block-actions-thread",
        "slack",
        urlencode({"payload": json.dumps(SLACK_BLOCK_ACTIONS)}).encode(),
        "U0CA5_C0CA5_1548261231.000200",
        FORM,
        options={"conversation_granularity": "thread"},
    ),
    Case("slack-link-button", "slack", urlencode({"payload": json.dumps(SLACK_LINK_BUTTON)}).encode(), None, FORM),
    Case("telegram-message", "telegram", js(TELEGRAM_MESSAGE), "1111111"),
    Case("telegram-callback-query", "telegram", js(TELEGRAM_CALLBACK), "-1001234567890"),
    Case("telegram-edited", "telegram", js(TELEGRAM_EDITED), "2222222"),
    Case("telegram-location", "telegram", js(TELEGRAM_LOCATION), "3333333"),
    Case("telegram-sticker", "telegram", js(TELEGRAM_STICKER), None),
    Case("botframework-message", "botframework", js(BOTFRAMEWORK_MESSAGE), BOTFRAMEWORK_MESSAGE["from"]["id"]),  # type: ignore[index]
    Case("botframework-conversation-update", "botframework", js({**BOTFRAMEWORK_MESSAGE, "type": "conversationUpdate"}), None),
    Case("facebook-message", "facebook", js(FACEBOOK_MESSAGE), "1254459154682919"),
    Case("facebook-read-then-postback", "facebook", js(FACEBOOK_READ_THEN_POSTBACK), "2222"),
    Case("facebook-delivery", "facebook", js(FACEBOOK_DELIVERY), None),
    Case("twilio-sms", "twilio", urlencode(TWILIO_SMS).encode(), "+15558675310", FORM),
    Case("twilio-whatsapp", "twilio", urlencode(TWILIO_WHATSAPP).encode(), "whatsapp:+14155238886", FORM),
    Case("mattermost-trigger", "mattermost", js(MATTERMOST_TRIGGER), "rnina9994bde8mua79zqcg5hmo"),
    Case("mattermost-button", "mattermost", js(MATTERMOST_BUTTON), "rnina9994bde8mua79zqcg5hmo"),
    Case("mattermost-other", "mattermost", js({"channel_id": "x", "user_id": "y", "text": "no trigger"}), None),
    Case("rocketchat-channel", "rocketchat", js(ROCKETCHAT_CHANNEL), "GENERAL"),
    Case("rocketchat-livechat", "rocketchat", js(ROCKETCHAT_LIVECHAT), "fasd6f5a4sd6f8a4sdf"),
    Case("webexteams-message", "webexteams", js(WEBEX_MESSAGE), WEBEX_MESSAGE["data"]["roomId"]),  # type: ignore[index]
    Case("hangouts-message", "hangouts", js(HANGOUTS_MESSAGE), "Chuck Norris"),
    Case("hangouts-card-clicked", "hangouts", js(HANGOUTS_CARD_CLICKED), "Ada Lovelace"),
]
