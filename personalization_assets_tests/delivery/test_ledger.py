"""The delivery ledger and the send loop on the embedded outbox: idempotent enqueue, a wave's
plan time, what a frequency cap counts, suppression entries as of a moment, retries and bounces."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from personalization_assets.audience.eligibility import (
    CONTACTABLE,
    HOLD_FREQUENCY_CAP,
    Suppression,
    wave_contact_holds,
)
from personalization_assets.campaign.config import DeliverySettings
from personalization_assets.delivery import ledger as statuses
from personalization_assets.delivery.ledger import Ledger
from personalization_assets.delivery.send import deliver
from personalization_assets.delivery.transport import MailConnection, Reply
from personalization_assets.messages.rendering import write_parquet


def _messages(n: int) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "email": [f"C{i}@Mail.example" for i in range(n)],
                         "message_id": [f"<m{i}@x>" for i in range(n)], "raw_sha256": ["h"] * n})


def test_enqueue_is_idempotent_and_a_resume_finds_what_is_open(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        assert ledger.enqueue("camp", "w1", _messages(3)) == 3
        assert ledger.enqueue("camp", "w1", _messages(3)) == 0
        ledger.mark("camp", "w1", "C0", statuses.SENDING, attempt=True)
        ledger.mark("camp", "w1", "C1", statuses.SENT, "250 ok")
        rows = ledger.rows("camp", "w1", statuses.OPEN_STATUSES)
        assert list(rows["customer_id"]) == ["C0", "C2"] and list(rows["attempts"]) == [1, 0]
        sent = ledger.rows("camp", "w1", [statuses.SENT]).iloc[0]
        assert sent["reply"] == "250 ok" and sent["sent_at"] and sent["email"] == "c1@mail.example"


def test_plan_time_is_fixed_once_and_caps_count_only_other_waves_in_the_window(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        first = ledger.plan_time("camp", "w2")
        assert ledger.plan_time("camp", "w2", now=first + dt.timedelta(days=3)) == first
        for campaign, wave in (("other", "w1"), ("camp", "w2")):
            ledger.enqueue(campaign, wave, _messages(2))
            ledger.mark_many(campaign, wave, ["C0", "C1"], statuses.SENT, "250")
        now = statuses.now_utc()
        counted = ledger.deliveries_by_address(now - dt.timedelta(days=7), now + dt.timedelta(seconds=1), other_than=("camp", "w2"))
        assert counted.to_dict() == {"c0@mail.example": 1, "c1@mail.example": 1}
        assert ledger.deliveries_by_address(now - dt.timedelta(days=7), now - dt.timedelta(days=1), other_than=("camp", "w2")).empty


def test_suppression_entries_apply_as_of_a_wave_plan_time(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        assert ledger.add_suppressions(pd.DataFrame({"customer_id": ["C1"], "reason": ["bounced"]}), "smtp") == 1
        assert ledger.add_suppressions(pd.DataFrame({"customer_id": ["C1"], "reason": ["bounced"]}), "smtp") == 0
        middle = statuses.now_utc()
        ledger.add_suppressions(pd.DataFrame({"email": ["C2@MAIL.example"], "reason": ["unsubscribed"]}), "import")
        assert list(ledger.suppressions(as_of=middle)["customer_id"]) == ["C1"]
        assert len(ledger.suppressions()) == 2


def test_wave_holds_add_shared_suppression_and_the_cap_to_contactable_customers_only():
    holds = np.array([CONTACTABLE, CONTACTABLE, "no_email", CONTACTABLE, CONTACTABLE], dtype=object)
    ids = pd.Series(["C0", "C1", "C2", "C3", "C4"])
    emails = pd.Series(["a@x.example", "B@x.example", "", "c@x.example", "d@x.example"])
    shared = Suppression.from_entries(pd.DataFrame({"customer_id": ["C0", None], "email": [None, "b@x.example"],
                                                    "reason": ["bounced", "unsubscribed"]}))
    recent = pd.Series({"c@x.example": 3, "d@x.example": 2})
    out = wave_contact_holds(holds, ids, emails, shared, recent, max_emails=3)
    assert list(out) == ["suppressed:bounced", "suppressed:unsubscribed", "no_email", HOLD_FREQUENCY_CAP, CONTACTABLE]
    assert list(wave_contact_holds(holds, ids, emails, Suppression.empty(), recent, None)) == list(holds)


class _Scripted(MailConnection):
    """Answers each recipient with the next reply of its script (then 250): a code, or (code, stage, text)."""

    def __init__(self, scripts: dict[str, list], received: list[str]):
        self.scripts, self.received = scripts, received

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> Reply:
        script = self.scripts.get(recipient, [])
        step = script.pop(0) if script else 250
        code, stage, text = step if isinstance(step, tuple) else (step, "RCPT", "scripted")
        if code == 250:
            self.received.append(recipient)
        return Reply(code, text, stage)


def _deliver(tmp_path, n: int, scripts: dict[str, list], **settings):
    messages = _messages(n).assign(raw=["Message-ID: <m>\r\n\r\nbody\r\n"] * n)
    path = tmp_path / "messages.parquet"
    write_parquet("SELECT * FROM sent_messages", [], messages, path)
    received: list[str] = []
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.enqueue("camp", "w1", messages)
    pending = ledger.rows("camp", "w1", statuses.OPEN_STATUSES)[["customer_id", "attempts"]].merge(messages[["customer_id", "email"]])
    settings = DeliverySettings(rate_per_second=1000.0, max_concurrency=2, max_attempts=3, retry_backoff_seconds=0.01, **settings)
    try:
        report = deliver(path, ledger, campaign_id="camp", wave="w1", envelope_from="news@x.example", settings=settings,
                         connect=lambda: _Scripted(scripts, received), pending=pending)
    except BaseException:
        ledger.close()
        raise
    return ledger, report, received


def test_deferred_messages_are_retried_and_only_a_refused_recipient_bounces_and_is_suppressed(tmp_path):
    scripts = {
        "C0@Mail.example": [451, 421],
        "C1@Mail.example": [(550, "RCPT", "5.1.1 no such user")],
        "C2@Mail.example": [451] * 10,
        "C4@Mail.example": [(554, "RCPT", "5.7.1 relay access denied")],  # the sender's problem: nobody suppressed
        "C5@Mail.example": [(552, "DATA", "5.3.4 message too big")],
        "C6@Mail.example": [(0, "MAIL", "ConnectionResetError"), (0, "MAIL", "timed out")],  # no answer: no attempt counted
    }
    ledger, report, received = _deliver(tmp_path, 7, scripts)
    with ledger:
        rows = ledger.rows("camp", "w1").set_index("customer_id")
        assert rows["status"].to_dict() == {"C0": "sent", "C1": "bounced", "C2": "deferred", "C3": "sent", "C4": "deferred",
                                            "C5": "deferred", "C6": "sent"}
        assert rows["attempts"].to_dict() == {"C0": 3, "C1": 1, "C2": 3, "C3": 1, "C4": 1, "C5": 1, "C6": 1}
        assert sorted(received) == ["C0@Mail.example", "C3@Mail.example", "C6@Mail.example"]
        assert dict(report.outcomes) == {"sent": 3, "bounced": 1, "deferred": 3}
        assert list(ledger.suppressions()["customer_id"]) == ["C1"]
        assert "5.7.1 relay access denied" in rows.loc["C4", "reply"]


def test_a_server_refusing_the_sender_for_every_message_stops_the_send_with_nobody_suppressed(tmp_path):
    from personalization_assets.delivery.send import SENDER_REFUSALS_TO_STOP
    from personalization_assets.delivery.transport import SessionRefused

    n = SENDER_REFUSALS_TO_STOP + 30
    scripts = {f"C{i}@Mail.example": [(554, "DATA", "5.7.1 rejected by DMARC policy")] for i in range(n)}
    with pytest.raises(SessionRefused, match="not the recipients'"):
        _deliver(tmp_path, n, scripts)
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        rows = ledger.rows("camp", "w1")
        assert ledger.suppressions().empty and rows["status"].isin(statuses.OPEN_STATUSES).all()
        assert (rows["status"] == "deferred").sum() >= SENDER_REFUSALS_TO_STOP


@pytest.mark.parametrize(("code", "stage", "text", "bounce"), [
    (550, "RCPT", "5.1.1 <a@x.example>: user unknown", True),
    (550, "RCPT", "mailbox unavailable", True),
    (551, "RCPT", "user not local", True),
    (550, "RCPT", "5.2.1 mailbox disabled", True),
    (550, "RCPT", "5.7.1 Service unavailable; client host blocked", False),
    (554, "RCPT", "relay access denied", False),
    (550, "DATA", "5.1.1 no such user", False),
    (552, "RCPT", "5.2.2 mailbox full", False),
    (450, "RCPT", "4.2.1 try later", False),
])
def test_only_a_permanent_refusal_of_the_recipients_address_is_a_bounce(code, stage, text, bounce):
    assert Reply(code, text, stage).recipient_rejected is bounce
