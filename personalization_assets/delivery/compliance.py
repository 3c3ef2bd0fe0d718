"""The email layout (a Jinja2 template pair) and the compliance screen every campaign passes before
a message is built.

Each message's two parts come from the campaign's templates (`paths.email_templates`, default
`<prompts>/email`): `message.html.j2`, rendered with autoescape and its `<style>` inlined into
each element (mail clients drop `<style>`), and `message.txt.j2`. The law (CAN-SPAM: sender
identity, a valid postal address, a working opt-out; GDPR/ePrivacy) and the large mailbox providers
(one-click unsubscribe for bulk senders) set what a message must show, so `screen_campaign` refuses a
campaign without a sender, or whose templates do not show the sender's name, postal address and
unsubscribe link in both parts. The headers (From, Reply-To, List-Unsubscribe, List-Unsubscribe-Post)
are written by `delivery/mime.py` from the same sender settings, never by a template.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import jinja2

from personalization_assets.campaign.config import CampaignConfig, SenderSettings
from personalization_assets.campaign.errors import ConfigError

HTML_TEMPLATE = "message.html.j2"
TEXT_TEMPLATE = "message.txt.j2"
# What every message must show, as the templates name it: the screen renders the templates with
# a probe value for each and looks for the probe in the output.
REQUIRED_VARIABLES = {
    "sender_name": "the sender's name (sender.from_name)",
    "postal_address": "the sender's postal address (sender.postal_address)",
    "unsubscribe_url": "the unsubscribe link (each customer's signed one-click link)",
}


@dataclass(frozen=True)
class EmailLayout:
    """The campaign's two email templates, compiled."""

    folder: Path
    html: jinja2.Template
    text: jinja2.Template

    def render(self, sender: SenderSettings, *, subject: str, body: str, unsubscribe_url: str) -> tuple[str, str]:
        """The HTML part (styles inlined) and the text part of one message. `subject` and `body`
        may hold `{{field}}` merge markers: Jinja treats them as text, so they reach the output as
        written and each customer's (escaped) values are filled in later (`delivery/mime.py`)."""
        import css_inline

        values = {"sender_name": sender.from_name, "postal_address": sender.postal_address, "reply_to": sender.reply_to,
                  "unsubscribe_url": unsubscribe_url, "subject": subject}
        paragraphs = [" ".join(part.split("\n")).strip() for part in body.replace("\r\n", "\n").split("\n\n") if part.strip()]
        html = css_inline.inline(self.html.render(**values, paragraphs=paragraphs))
        text = self.text.render(**values, body=body.replace("\r\n", "\n").strip())
        return html, text


def load_layout(folder: Path) -> EmailLayout:
    """The templates in `folder`; a missing file or a template syntax error is a ConfigError naming it."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder), autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
    )
    templates = {}
    for name in (HTML_TEMPLATE, TEXT_TEMPLATE):
        path = folder / name
        if not path.is_file():
            raise ConfigError(path, "email template not found (paths.email_templates names its folder; default <prompts>/email)")
        try:
            templates[name] = environment.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(path, f"not a valid Jinja2 template: {exc.message} (line {exc.lineno})") from None
    return EmailLayout(folder, templates[HTML_TEMPLATE], templates[TEXT_TEMPLATE])


class _Visible(HTMLParser):
    """What an HTML document shows a reader: its text outside comments, <head>, <style> and
    <script>, and the href of every <a>."""

    HIDDEN = frozenset({"head", "style", "script", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.text: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in self.HIDDEN
        if tag == "a":
            self.hrefs += [value or "" for name, value in attrs if name == "href"]

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in self.HIDDEN and self._hidden > 0

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)


def screen_campaign(config: CampaignConfig) -> EmailLayout:
    """The campaign's layout, once it passed the compliance screen; else a ConfigError naming the
    file and everything missing (exit 64: nothing is built or sent)."""
    if config.sender is None:
        raise ConfigError(config.path, "sender: missing: every email must carry who sent it; give sender.from_name, from_address, "
                          "reply_to, postal_address, unsubscribe_url and unsubscribe_mailto")
    layout = load_layout(config.paths.email_templates_dir)
    probes = {name: f"cpo-probe-{name.replace('_', '-')}" for name in REQUIRED_VARIABLES}
    probe_sender = config.sender.model_copy(update={"from_name": probes["sender_name"], "postal_address": probes["postal_address"]})
    try:
        html, text = layout.render(probe_sender, subject="Subject", body="First paragraph.\n\nSecond paragraph.",
                                   unsubscribe_url="https://unsubscribe.example/" + probes["unsubscribe_url"])
    except jinja2.TemplateError as exc:
        raise ConfigError(layout.folder, f"the email templates do not render: {exc}") from None
    visible = _Visible()
    visible.feed(html)
    shown = "".join(visible.text)
    problems = []
    for name, what in REQUIRED_VARIABLES.items():
        probe = probes[name]
        in_html = any(probe in href for href in visible.hrefs) if name == "unsubscribe_url" else probe in shown
        in_text = probe in text
        if not in_html:
            problems.append(f"{HTML_TEMPLATE} does not show {what}" + (" as a link (<a href=\"{{ unsubscribe_url }}\">)"
                                                                        if name == "unsubscribe_url" else f" ({{{{ {name} }}}})"))
        if not in_text:
            problems.append(f"{TEXT_TEMPLATE} does not show {what} ({{{{ {name} }}}})")
    if problems:
        raise ConfigError(layout.folder, "the email templates fail the compliance screen (CAN-SPAM, RFC 8058): " + "; ".join(problems))
    return layout

