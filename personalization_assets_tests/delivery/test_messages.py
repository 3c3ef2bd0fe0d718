"""The MIME messages: they parse, carry the headers a mail server and a mailbox provider require,
escape merge values in HTML, and are the same message (Message-ID) when built again."""

import email
import email.policy
import hashlib
import hmac

import duckdb
import pandas as pd
import pytest

from personalization_assets.campaign.config import load_campaign
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.delivery.compliance import screen_campaign
from personalization_assets.delivery.mime import (
    TEST_KEY_NAME,
    SigningKey,
    build_messages,
    unsubscribe_tokens,
)
from personalization_assets.messages.rendering import export_messages

WAVE = "2026-11-16"
SUBJECT = "Spring is here, {{first_name}} — your trail kit is ready and waiting for you"
BODY = "Hi {{first_name}},\n\nOur spring range & more is in.\nCome by.\n\nThanks"


def _content(message, kind: str) -> str:
    """A part's text with its line ends as Python writes them (base64 parts keep the CRLF they were sent with)."""
    return message.get_body((kind,)).get_content().replace("\r\n", "\n")


@pytest.fixture
def config():
    return load_campaign(PROJECT_ROOT / "data" / "campaign.yaml")


def _frames(names):
    customers = pd.DataFrame({"customer_id": [f"C{i:04d}" for i in range(len(names))],
                              "email": [f"c{i}@mail.example" for i in range(len(names))], "first_name": names})
    assignments = pd.DataFrame({"wave": WAVE, "customer_id": customers["customer_id"], "segment": "s1", "arm": "friendly",
                                "variant_id": "s1:friendly", "sent": [True] * (len(names) - 1) + [False]})
    variants = pd.DataFrame({"segment": ["s1"], "variant_id": ["s1:friendly"], "subject": [SUBJECT], "body": [BODY]})
    return assignments, customers, variants


def _build(config, tmp_path, names, *, secret="s3cret", wave=WAVE, name="m.parquet"):
    assignments, customers, variants = _frames(names)
    path = tmp_path / name
    build_messages(assignments, customers, variants, config=config, wave=wave, layout=screen_campaign(config),
                   key=SigningKey.from_secret(secret), path=path)
    return duckdb.sql(f"SELECT * FROM read_parquet('{path.as_posix()}')").df()


def test_every_message_parses_and_carries_the_required_headers(config, tmp_path):
    names = ["O'Brien & <Sons>", "Zoë", "  ", "Ann"]
    frame = _build(config, tmp_path, names)
    assert list(frame["customer_id"]) == ["C0000", "C0001", "C0002"]  # the unsent customer has no message
    for row in frame.itertuples():
        assert row.raw.isascii() and all(len(line) <= 998 for line in row.raw.split("\r\n"))
        assert hashlib.sha256(row.raw.encode()).hexdigest() == row.raw_sha256
        message = email.message_from_bytes(row.raw.encode(), policy=email.policy.default)
        assert message.get_content_type() == "multipart/alternative"
        assert message["From"] == "Northwind Outfitters <news@northwind.example>"
        assert message["Reply-To"] == "care@northwind.example"
        assert message["To"] == row.email
        assert message["Message-ID"] == row.message_id and message["Date"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        token = hmac.new(b"s3cret", f"cpo-unsubscribe-v1:{row.customer_id}".encode(), hashlib.sha256).hexdigest()[:32]
        link = f"https://northwind.example/email/unsubscribe?u={row.customer_id}&t={token}"
        assert message["List-Unsubscribe"] == f"<mailto:unsubscribe@northwind.example?subject=unsubscribe%20{row.customer_id}%20{token}>, <{link}>"
        text, html = (_content(message, kind) for kind in ("plain", "html"))
        for part in (text, html):
            assert "100 Harbor Way, Seattle, WA 98101, USA" in part and "Northwind Outfitters" in part
        assert link in text and f'href="{link.replace("&", "&amp;")}"' in html
        assert 'style="' in html and "<style>" not in html  # CSS inlined for mail clients
        assert all(len(line) <= 76 for part in message.iter_parts() for line in part.as_string().split("\n")[3:])
        assert row.signed_with == "CPO_UNSUBSCRIBE_SECRET"


def test_merge_values_are_escaped_in_html_and_literal_in_text_and_subject(config, tmp_path):
    frame = _build(config, tmp_path, ["O'Brien & <Sons>", "  ", "x"])
    first = email.message_from_bytes(frame["raw"][0].encode(), policy=email.policy.default)
    html = _content(first, "html")
    assert "Hi O&#39;Brien &amp; &lt;Sons&gt;," in html and "<Sons>" not in html
    assert "Our spring range &amp; more is in. Come by." in html
    assert _content(first, "plain").startswith("Hi O'Brien & <Sons>,\n\nOur spring range & more is in.\nCome by.")
    # RFC 2047 encoded words decode to the exact subject, with the merge value in it.
    assert str(first["Subject"]) == SUBJECT.replace("{{first_name}}", "O'Brien & <Sons>")
    assert "=?utf-8?b?" in frame["raw"][0].split("\r\n\r\n")[0]
    blank = email.message_from_bytes(frame["raw"][1].encode(), policy=email.policy.default)
    assert _content(blank, "plain").startswith("Hi there,")  # the merge rule's fallback


def test_the_text_part_is_the_rendered_email_the_wave_sealed(config, tmp_path):
    assignments, customers, variants = _frames(["Ann", "Bo", "x"])
    export_messages(assignments, customers, variants, tmp_path / "rendered.parquet")
    rendered = duckdb.sql(f"SELECT * FROM read_parquet('{(tmp_path / 'rendered.parquet').as_posix()}')").df()
    built = _build(config, tmp_path, ["Ann", "Bo", "x"])
    for raw, body, subject in zip(built["raw"], rendered["body"], rendered["subject"]):
        message = email.message_from_bytes(raw.encode(), policy=email.policy.default)
        assert _content(message, "plain").startswith(body.strip() + "\n\n--\n")
        assert str(message["Subject"]) == subject


def test_message_id_is_stable_per_campaign_wave_and_customer(config, tmp_path):
    once = _build(config, tmp_path, ["Ann", "Bo", "x"], name="a.parquet")
    again = _build(config, tmp_path, ["Ann", "Bo", "x"], name="b.parquet")
    other_wave = _build(config, tmp_path, ["Ann", "Bo", "x"], wave="2026-11-23", name="c.parquet")
    assert list(once["message_id"]) == list(again["message_id"])
    assert not set(once["message_id"]) & set(other_wave["message_id"])
    assert once["message_id"].str.fullmatch(r"<[0-9a-f]{32}@northwind\.example>").all()


def test_without_a_secret_the_tokens_are_signed_with_the_test_key(config, tmp_path):
    frame = _build(config, tmp_path, ["Ann", "x"], secret=None)
    assert set(frame["signed_with"]) == {TEST_KEY_NAME}
    assert repr(SigningKey.from_secret("hunter2")) == "SigningKey(CPO_UNSUBSCRIBE_SECRET)"


def test_tokens_by_sql_equal_rfc_2104_hmac_for_long_keys_too():
    ids = pd.Series(["C1", "é-2", "x" * 80])
    for secret in ("k", "k" * 100):
        expected = [hmac.new(secret.encode(), f"cpo-unsubscribe-v1:{i}".encode(), hashlib.sha256).hexdigest()[:32] for i in ids]
        assert list(unsubscribe_tokens(ids, SigningKey.from_secret(secret))) == expected


def _layout_folder(tmp_path, html_footer, text_footer):
    folder = tmp_path / "email"
    folder.mkdir()
    source = PROJECT_ROOT / "prompts" / "email"
    (folder / "message.html.j2").write_text((source / "message.html.j2").read_text().replace(
        '<div class="footer">', '<div class="footer">' + html_footer + "<!--").replace("</div>\n</div>\n</body>", "--></div>\n</div>\n</body>"))
    (folder / "message.txt.j2").write_text("{{ body }}\n" + text_footer)
    return folder


def test_the_compliance_screen_refuses_a_template_without_unsubscribe_or_postal_address(config, tmp_path):
    folder = _layout_folder(tmp_path, "<p>{{ sender_name }}</p>", "{{ sender_name }} {{ postal_address }}")
    edited = config.model_copy(update={"paths": config.paths.model_copy(update={"email_templates": folder})})
    with pytest.raises(ConfigError) as refused:
        screen_campaign(edited)
    message = str(refused.value)
    assert "message.html.j2 does not show the sender's postal address" in message
    assert "message.html.j2 does not show the unsubscribe link" in message and "message.txt.j2 does not show the unsubscribe link" in message
    assert "message.txt.j2 does not show the sender's name" not in message


def test_the_compliance_screen_refuses_a_campaign_without_a_sender(config):
    with pytest.raises(ConfigError, match="sender: missing"):
        screen_campaign(config.model_copy(update={"sender": None}))


def test_a_plain_http_unsubscribe_link_or_a_header_breaking_name_is_refused(tmp_path):
    text = (PROJECT_ROOT / "data" / "campaign.yaml").read_text()
    for wrong, right in (("https://northwind.example/email/unsubscribe", "http://northwind.example/email/unsubscribe"),
                         ("from_name: Northwind Outfitters", 'from_name: "Northwind\\r\\nBcc: x@y.example"')):
        path = tmp_path / "campaign.yaml"
        path.write_text(text.replace(wrong, right, 1))
        with pytest.raises(ConfigError, match="sender"):
            load_campaign(path)


def test_a_sent_customer_whose_variant_is_missing_stops_the_build_and_writes_nothing(config, tmp_path):
    from personalization_assets.campaign.errors import DataContractError

    assignments, customers, variants = _frames(["Ana", "Ben", "Cy"])
    assignments.loc[1, ["arm", "variant_id"]] = ["urgent", "s1:urgent"]
    with pytest.raises(DataContractError, match="s1/s1:urgent"):
        build_messages(assignments, customers, variants, config=config, wave=WAVE, layout=screen_campaign(config),
                       key=SigningKey.from_secret("s3cret"), path=tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()
