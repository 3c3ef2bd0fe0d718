"""Reading a file of unsubscribes: every row names a customer, a token must be the customer's."""

import pandas as pd
import pytest

from personalization_assets.campaign.errors import DataContractError
from personalization_assets.delivery.mime import SigningKey, unsubscribe_tokens
from personalization_assets.delivery.unsubscribes import read_unsubscribes


def _write(tmp_path, frame: pd.DataFrame):
    path = tmp_path / "unsubscribes.csv"
    frame.to_csv(path, index=False)
    return path


def test_rows_by_id_or_address_with_a_default_reason(tmp_path):
    path = _write(tmp_path, pd.DataFrame({"customer_id": ["C1", ""], "email": ["", "Ann@Mail.example"], "reason": ["complained", ""]}))
    entries = read_unsubscribes(path, secret=None)
    assert entries.to_dict("records") == [{"customer_id": "C1", "email": "", "reason": "complained"},
                                          {"customer_id": "", "email": "Ann@Mail.example", "reason": "unsubscribed"}]


def test_a_forged_token_refuses_the_file_and_names_the_row(tmp_path):
    good = unsubscribe_tokens(pd.Series(["C1"]), SigningKey.from_secret("k"))[0]
    path = _write(tmp_path, pd.DataFrame({"customer_id": ["C1", "C2"], "token": [good, good]}))
    with pytest.raises(DataContractError, match="token") as refused:
        read_unsubscribes(path, secret="k")
    assert "C2" in str(refused.value) and "C1," not in str(refused.value)
    assert len(read_unsubscribes(_write(tmp_path, pd.DataFrame({"customer_id": ["C1"], "token": [good]})), secret="k")) == 1
    with pytest.raises(DataContractError, match="CPO_UNSUBSCRIBE_SECRET"):
        read_unsubscribes(path, secret=None)


@pytest.mark.parametrize(("frame", "rule"), [
    (pd.DataFrame({"customer_id": ["C1"], "note": ["x"]}), "unknown column"),
    (pd.DataFrame({"reason": ["unsubscribed"]}), "needs a customer_id or an email"),
    (pd.DataFrame({"email": ["not an address"]}), "must be one email address"),
    (pd.DataFrame({"customer_id": ["C1"], "reason": ["Opted Out!"]}), "lower-case word"),
])
def test_bad_rows_are_refused(tmp_path, frame, rule):
    with pytest.raises(DataContractError, match=rule):
        read_unsubscribes(_write(tmp_path, frame), secret=None)
