"""Scrubber: every configured key, and any echo of it, is gone from a service's error text."""

import pytest

from personalization_assets.backends.secrets import REDACTED, Scrubber, ServiceError

KEY = "sk-proj-4f9c2a7e1b8d6035"


def test_the_key_whole_masked_or_cut_is_redacted_and_nothing_else():
    scrub = Scrubber([KEY])
    said = (f"Incorrect API key provided: {KEY}. Masked: sk-proj-4f9c****6035; "
            f"tail {KEY[-9:]}. See https://platform.example/account/api-keys for details.")
    cleaned = scrub(said)
    for echo in (KEY, "sk-proj-4f9c", KEY[-9:]):
        assert echo not in cleaned
    assert cleaned.count(REDACTED) == 3
    assert cleaned.startswith("Incorrect API key provided: [redacted]") and "https://platform.example/account/api-keys" in cleaned


def test_without_keys_or_text_nothing_changes():
    assert Scrubber([])("Incorrect API key provided: abc") == "Incorrect API key provided: abc"
    assert Scrubber([KEY])(None) is None and Scrubber([KEY])("") == ""
    assert Scrubber(["abc"])("abcdef") == "abcdef"  # too short to be a key: left alone


def test_an_exception_becomes_a_scrubbed_service_error_without_its_cause():
    scrub = Scrubber([KEY])
    with pytest.raises(ServiceError) as raised:
        try:
            raise PermissionError(f"401: key {KEY} refused")
        except PermissionError as exc:
            raise scrub.error(exc) from None
    assert str(raised.value) == "PermissionError: 401: key [redacted] refused"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
