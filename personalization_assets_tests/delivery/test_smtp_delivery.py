"""`cpo send` against a real SMTP server on loopback (aiosmtpd, started and stopped by each test):
every message parses and carries its headers, a send killed mid-way and resumed delivers each
message exactly once, a server refusing 30% of commands with 421/451 loses nothing, and suppressed,
capped and held-out customers receive nothing."""

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from personalization_assets.cli import main
from personalization_assets.delivery.ledger import Ledger
from personalization_assets.delivery.mime import SigningKey, unsubscribe_tokens
from personalization_assets.warehouse import DuckDBWarehouse
from personalization_assets_tests.conftest import TEST_WAVE
from personalization_assets_tests.delivery.smtp_server import Recorder, smtp_server

pytestmark = pytest.mark.e2e
SECRET = "unsubscribe-secret-for-tests-7d1f"
NEXT_WAVE = "2026-11-23"


def _use_server(monkeypatch, controller, security="none"):
    monkeypatch.setenv("CPO_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CPO_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("CPO_SMTP_SECURITY", security)
    monkeypatch.setenv("CPO_UNSUBSCRIBE_SECRET", SECRET)


def _fast(folder, **changes):
    folder.edit_campaign(delivery__rate_per_second=5000.0, delivery__retry_backoff_seconds=0.01, delivery__retry_max_backoff_seconds=0.2,
                         **changes)


def _send(folder, *extra) -> int:
    return main(["send", "--wave", TEST_WAVE, "--campaign", str(folder.campaign), *extra])


def _sent_customers(folder, wave=TEST_WAVE) -> pd.DataFrame:
    with DuckDBWarehouse(folder.warehouse).reader() as connection:
        return connection.execute(
            "SELECT a.customer_id, c.email, a.sent FROM personalization.assignments a JOIN personalization.customers c USING (customer_id) "
            "WHERE a.wave = ?", [wave]).df()


def _ledger(folder) -> Ledger:
    return Ledger(folder.home / "delivery" / "ledger.sqlite3")


def test_a_wave_goes_out_once_with_every_header_and_nothing_to_the_held_out(materialized_copy, monkeypatch, capsys):
    _fast(materialized_copy)
    recorder = Recorder()
    with smtp_server(recorder) as controller:
        _use_server(monkeypatch, controller)
        assert _send(materialized_copy) == 0
        assert _send(materialized_copy) == 0  # idempotent: a second send sends nothing
    customers = _sent_customers(materialized_copy)
    sent = customers[customers["sent"]]
    assert len(recorder.accepted) == len(sent) > 1000
    assert sorted(recorder.recipients) == sorted(sent["email"])
    assert not set(recorder.recipients) & set(customers.loc[~customers["sent"], "email"])  # held out: nothing
    assert len(set(recorder.message_ids())) == len(sent)
    for message in recorder.accepted[:50]:
        assert message.get_content_type() == "multipart/alternative"
        assert {"From", "Reply-To", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"} <= set(message.keys())
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    with _ledger(materialized_copy) as ledger:
        rows = ledger.rows("spring-outdoors-2026", TEST_WAVE)
    assert set(rows["status"]) == {"sent"} and rows["reply"].str.startswith("250 2.0.0 Ok: queued as").all()
    assert sorted(rows["message_id"]) == sorted(recorder.message_ids())
    output = capsys.readouterr().out
    assert f"sent: {len(sent)}" in output and SECRET not in output
    for path in materialized_copy.home.rglob("*"):  # the secret is never stored
        assert not path.is_file() or SECRET.encode() not in path.read_bytes()


def test_a_send_killed_mid_way_and_resumed_delivers_each_message_exactly_once(materialized_copy, monkeypatch):
    _fast(materialized_copy, delivery__max_concurrency=1)
    recorder = Recorder()
    process: list[subprocess.Popen] = []

    def kill_at(accepted: int) -> None:
        # The sender dies between two messages' transactions: after 300 were accepted, as the 301st begins.
        if accepted == 300 and process and process[0].poll() is None:
            os.kill(process[0].pid, signal.SIGKILL)
            process[0].wait()

    recorder.before_mail = kill_at
    with smtp_server(recorder) as controller:
        _use_server(monkeypatch, controller)
        command = [sys.executable, "-m", "personalization_assets.cli", "send", "--wave", TEST_WAVE, "--campaign", str(materialized_copy.campaign)]
        process.append(subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        process[0].wait(timeout=300)
        assert process[0].returncode == -signal.SIGKILL
        assert len(recorder.accepted) == 300
        with _ledger(materialized_copy) as ledger:
            left = ledger.rows("spring-outdoors-2026", TEST_WAVE)
        assert (left["status"] == "sent").sum() == 300 and (left["status"] == "sending").sum() == 1
        recorder.before_mail = lambda accepted: None
        assert _send(materialized_copy) == 0
    sent = _sent_customers(materialized_copy).query("sent")
    ids = pd.Series(recorder.message_ids())
    assert len(ids) == len(sent) and ids.is_unique  # nobody twice, nobody skipped
    assert sorted(recorder.recipients) == sorted(sent["email"])


def test_a_server_refusing_30_percent_of_commands_with_421_or_451_loses_nothing(materialized_copy, monkeypatch):
    _fast(materialized_copy, delivery__max_attempts=40)
    draws = random.Random(20261203)
    recorder = Recorder(refuse=lambda command: (draws.choice(["421 4.3.2 Service shutting down", "451 4.3.0 Try again later"])
                                                if draws.random() < 0.3 else None))
    with smtp_server(recorder) as controller:
        _use_server(monkeypatch, controller)
        assert _send(materialized_copy) == 0
    sent = _sent_customers(materialized_copy).query("sent")
    assert recorder.refused > 0.3 * len(sent)  # the server did refuse (each message needs three commands)
    assert len(recorder.accepted) == len(sent) and pd.Series(recorder.message_ids()).is_unique
    with _ledger(materialized_copy) as ledger:
        rows = ledger.rows("spring-outdoors-2026", TEST_WAVE)
    assert set(rows["status"]) == {"sent"} and rows["attempts"].max() > 1


def test_suppressed_after_the_decision_and_capped_customers_receive_nothing(materialized_copy, monkeypatch, tmp_path):
    _fast(materialized_copy, delivery__frequency_cap={"max_emails": 2, "days": 7})
    monkeypatch.setenv("CPO_UNSUBSCRIBE_SECRET", SECRET)
    sent = _sent_customers(materialized_copy).query("sent")
    # Five unsubscribe by the one-click link after the wave was decided (tokens signed with the secret).
    leaving = sent.head(5)
    tokens = unsubscribe_tokens(leaving["customer_id"], SigningKey.from_secret(SECRET))
    unsubscribes = tmp_path / "unsubscribes.csv"
    leaving.assign(token=tokens.to_numpy())[["customer_id", "token"]].to_csv(unsubscribes, index=False)
    assert main(["unsubscribes", "import", str(unsubscribes)]) == 0
    forged = tmp_path / "forged.csv"
    pd.DataFrame({"customer_id": [sent["customer_id"].iloc[9]], "token": ["0" * 32]}).to_csv(forged, index=False)
    assert main(["unsubscribes", "import", str(forged)]) == 64
    # Another campaign of this home already sent 200 of the customers two emails this week.
    capped = sent.iloc[100:300]
    with _ledger(materialized_copy) as ledger:
        others = capped.assign(message_id="<other@x>", raw_sha256="h")
        for other_wave in ("2026-11-23", "2026-11-30"):
            ledger.enqueue("autumn-campaign", other_wave, others)
            ledger.mark_many("autumn-campaign", other_wave, others["customer_id"], "sent", "250 ok")
    assert main(["run", "--wave", NEXT_WAVE, "--campaign", str(materialized_copy.campaign)]) == 0
    recorder = Recorder()
    with smtp_server(recorder) as controller:
        _use_server(monkeypatch, controller)
        assert _send(materialized_copy) == 0
        assert main(["send", "--wave", NEXT_WAVE, "--campaign", str(materialized_copy.campaign)]) == 0
    # This wave was decided before both: the unsubscribed and the capped are refused when it is sent.
    first_count = len(sent) - 5 - len(capped)
    this_wave = set(recorder.recipients[:first_count])
    assert len(this_wave) == first_count and not this_wave & (set(leaving["email"]) | set(capped["email"]))
    with _ledger(materialized_copy) as ledger:
        first = ledger.rows("spring-outdoors-2026", TEST_WAVE).set_index("customer_id")
    assert set(first.loc[leaving["customer_id"], "status"]) == {"suppressed"}
    assert set(first.loc[capped["customer_id"], "reply"]) == {"over delivery.frequency_cap when the send ran"}
    next_wave = _sent_customers(materialized_copy, NEXT_WAVE)
    with DuckDBWarehouse(materialized_copy.warehouse).reader() as connection:
        holds = connection.execute("SELECT customer_id, hold_reason FROM personalization.assignments WHERE wave = ?", [NEXT_WAVE]).df()
    held = holds.set_index("customer_id")["hold_reason"]
    assert set(held[capped["customer_id"]]) == {"frequency_cap"}
    assert set(held[leaving["customer_id"]]) == {"suppressed:unsubscribed"}
    delivered_next = set(recorder.recipients[first_count:])
    assert not delivered_next & set(capped["email"]) and not delivered_next & set(leaving["email"])
    assert len(delivered_next) == int(next_wave["sent"].sum())


@pytest.mark.parametrize("password", ["pa55-word-x", "wrong-password"])
def test_starttls_with_credentials_from_the_environment(materialized_copy, monkeypatch, capsys, password):
    import ssl

    import trustme
    from aiosmtpd.smtp import AuthResult

    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = Path(os.environ["CPO_HOME"]).parent / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        # handled=False: aiosmtpd itself answers a failed login with 535 (its default, True, leaves the reply to us).
        return AuthResult(success=auth_data.login == b"sender" and auth_data.password == b"pa55-word-x", handled=False)

    _fast(materialized_copy)
    recorder = Recorder()
    with smtp_server(recorder, tls_context=server_context, require_starttls=True, authenticator=authenticator, auth_required=True) as controller:
        _use_server(monkeypatch, controller, security="starttls")
        monkeypatch.setenv("CPO_SMTP_CA_FILE", str(ca_file))
        monkeypatch.setenv("CPO_SMTP_USERNAME", "sender")
        monkeypatch.setenv("CPO_SMTP_PASSWORD", password)
        if password != "pa55-word-x":
            # A refused login stops the send at once, naming the server's reply; nobody is bounced or suppressed.
            assert _send(materialized_copy) == 64
            assert "535" in capsys.readouterr().err and not recorder.accepted
            with _ledger(materialized_copy) as ledger:
                statuses = ledger.rows("spring-outdoors-2026", TEST_WAVE)["status"]
                assert not statuses.empty and not statuses.isin(["bounced", "sent"]).any() and ledger.suppressions().empty
            return
        assert _send(materialized_copy) == 0
    assert len(recorder.accepted) == int(_sent_customers(materialized_copy)["sent"].sum()) and logins
    for path in materialized_copy.home.rglob("*"):
        assert not path.is_file() or b"pa55-word-x" not in path.read_bytes()


def test_an_esp_bundle_lists_every_recipient_once_with_one_template_per_variant(materialized_copy, monkeypatch, capsys):
    monkeypatch.setenv("CPO_UNSUBSCRIBE_SECRET", SECRET)
    assert _send(materialized_copy, "--esp-bundle") == 0
    assert _send(materialized_copy, "--esp-bundle") == 0  # nothing left: no second, empty bundle
    (folder,) = (materialized_copy.home / "exports" / TEST_WAVE / "esp").iterdir()
    assert f"in the ESP bundle {folder}" in capsys.readouterr().out
    recipients = pd.read_csv(folder / "recipients.csv", dtype=str, keep_default_na=False)
    variants = pd.read_csv(folder / "variants.csv", dtype=str)
    sent = _sent_customers(materialized_copy).query("sent")
    assert sorted(recipients["customer_id"]) == sorted(sent["customer_id"]) and recipients["message_id"].is_unique
    tokens = unsubscribe_tokens(recipients["customer_id"], SigningKey.from_secret(SECRET))
    assert (recipients["unsubscribe_url"] == "https://northwind.example/email/unsubscribe?u=" + recipients["customer_id"] + "&t=" + tokens).all()
    assert (recipients["first_name"] != "").all()
    assert set(variants["variant_id"]) == set(recipients["variant_id"])
    for row in variants.itertuples():
        html, text = (folder / row.html_file).read_text(), (folder / row.text_file).read_text()
        assert 'href="{{unsubscribe_url}}"' in html and "{{unsubscribe_url}}" in text and "100 Harbor Way" in text
    with _ledger(materialized_copy) as ledger:
        assert set(ledger.rows("spring-outdoors-2026", TEST_WAVE)["status"]) == {"exported"}
    # Killed after the bundle was published and before the ledger recorded it: the next send
    # records the published bundle instead of bundling its recipients a second time.
    import sqlite3

    with sqlite3.connect(materialized_copy.home / "delivery" / "ledger.sqlite3") as connection:
        connection.execute("UPDATE deliveries SET status = 'queued', reply = ''")
    assert _send(materialized_copy, "--esp-bundle") == 0
    assert [path.name for path in (materialized_copy.home / "exports" / TEST_WAVE / "esp").iterdir()] == [folder.name]
    with _ledger(materialized_copy) as ledger:
        rows = ledger.rows("spring-outdoors-2026", TEST_WAVE)
        assert set(rows["status"]) == {"exported"} and (rows["reply"] == f"in the ESP bundle {folder}").all()


def test_the_outbox_is_a_rehearsal_that_no_cap_counts_and_no_real_send_skips(materialized_copy, monkeypatch, capsys):
    for name in ("CPO_SMTP_HOST", "CPO_UNSUBSCRIBE_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert _send(materialized_copy) == 0
    outbox = list((materialized_copy.home / "exports" / TEST_WAVE / "outbox").glob("*.eml"))
    sent = int(_sent_customers(materialized_copy)["sent"].sum())
    assert len(outbox) == sent and "a rehearsal" in capsys.readouterr().out
    with _ledger(materialized_copy) as ledger:
        assert ledger.rows("spring-outdoors-2026", TEST_WAVE).empty  # the shared ledger, which caps count: nothing
    # The rehearsal's messages were signed with the test key; the real send rebuilds them with the secret and sends them all.
    _fast(materialized_copy)
    recorder = Recorder()
    with smtp_server(recorder) as controller:
        _use_server(monkeypatch, controller)
        assert _send(materialized_copy) == 0
    assert len(recorder.accepted) == sent and len(set(recorder.message_ids())) == sent
    from urllib.parse import parse_qs, urlsplit

    link = str(recorder.accepted[0]["List-Unsubscribe"]).split("<")[-1].rstrip(">")
    query = parse_qs(urlsplit(link).query)
    assert query["t"] == list(unsubscribe_tokens(pd.Series(query["u"]), SigningKey.from_secret(SECRET)))
