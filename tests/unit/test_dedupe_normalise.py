from __future__ import annotations

import pytest

from services.curation.boilerplate import strip_boilerplate
from services.curation.number_words import fold_number_words, ordinal

pytestmark = pytest.mark.unit

BODY = "Hi team,\n\nThe audit starts on the 3rd floor next week.\nPlease bring the ledgers.\n\nThanks,\nAna"
BODY_WITHOUT_CLOSING = "Hi team,\n\nThe audit starts on the 3rd floor next week.\nPlease bring the ledgers."


@pytest.mark.parametrize("prefix", [
    "Fwd: Audit\n\n",
    "---------- Forwarded message ---------\nFrom: Ana López <a.lopez@example.com>\nDate: Mon, Jan 3, 2022 at "
    "9:14 AM\nSubject: Audit\nTo: Wei Zhang <w.zhang@example.com>\n\n",
    "-----Original Message-----\nFrom: López, Ana\nSent: Monday, January 3, 2022 9:14 AM\nTo: Wei Zhang\n"
    "Subject: RE: Audit\n\n",
    "________________________________\nVon: Ana López\nGesendet: Montag, 3. Januar 2022 09:14\nAn: Wei\n"
    "Betreff: WG: Audit\n",
    "-------- Message transféré --------\nDe : Ana\nDate : lun. 3 janv. 2022\nÀ : wei@example.com\nObjet : TR: "
    "Audit\n\n",
])
def test_forward_headers_are_removed(prefix: str) -> None:
    assert strip_boilerplate(prefix + BODY) == BODY_WITHOUT_CLOSING


def test_a_quoted_reply_loses_its_attribution_and_quote_marks() -> None:
    quoted = "\n".join(f"> {line}" if line else ">" for line in BODY.splitlines())
    reply = f"On Mon, Jan 3, 2022 at 9:14 AM Ana López <a.lopez@\nexample.com> wrote:\n\n{quoted}"
    assert strip_boilerplate(reply) == BODY_WITHOUT_CLOSING


@pytest.mark.parametrize("tail", [
    "\nAna López | Senior Analyst | Northwind Bank plc\nT +44 20 7946 0018 | a.lopez@northwindbank.co.uk",
    "\n\nSent from my iPhone",
    "\n\n________________________________\nThis message and any attachments are confidential and intended solely\n"
    "for the addressee. If you have received this message in error, please\nnotify the sender immediately.",
    "\nDiese E-Mail enthält vertrauliche Informationen. Wenn Sie nicht der richtige Adressat sind, informieren "
    "Sie bitte sofort den Absender.\n\nPlease consider the environment before printing this email.",
])
def test_signatures_taglines_and_notices_at_the_end_are_removed(tail: str) -> None:
    assert strip_boilerplate(BODY + tail) == BODY_WITHOUT_CLOSING


def test_content_is_kept_when_it_only_looks_like_boilerplate() -> None:
    text = ("To: all branch managers\nThanks to the new ledger the audit found no errors in the second quarter and "
            "the report is ready for the board, with one exception noted below.\nThe exception is minor.")
    assert strip_boilerplate(text) == text.split("\n", 1)[1]     # a header line on top goes, the rest stays
    long_after_sign_off = "Regards,\n" + " ".join(["word"] * 20)
    assert strip_boilerplate(long_after_sign_off) == long_after_sign_off


@pytest.mark.parametrize(("words", "folded"), [
    ("the second quarter", "the 2nd quarter"),
    ("twentyfive percent", "25 percent"),          # "twenty-five" after punctuation is deleted
    ("twenty five", "25"),
    ("one thousand two hundred", "1200"),
    ("twelve hundred", "1200"),
    ("one hundred and twenty days", "120 days"),
    ("three thousand and ten euros", "3010 euros"),
    ("the twentyfirst of march", "the 21st of march"),
    ("five three", "5 3"),
    ("rock and roll", "rock and roll"),
])
def test_number_words_fold_to_digits(words: str, folded: str) -> None:
    assert " ".join(fold_number_words(words.split())) == folded


def test_ordinal_suffixes() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
