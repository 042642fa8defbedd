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


def test_unrelated_short_messages_whose_first_line_reads_like_a_sign_off_are_not_duplicates() -> None:
    """A first line "Thanks for the update." is content: stripping must never empty a message."""
    from services.curation.dedupe import DedupeConfig, Deduper

    deduper = Deduper(DedupeConfig())
    messages = [
        "Thank you for contacting us.\nYour refund of 250 dollars was issued to account 4411 on March 3.",
        "Thanks for the update.\nThe patient was discharged with 40mg atorvastatin.\nFollow-up in two weeks.",
        "Cheers mate.\nI approved the wire of 2,000,000 USD.\nRef 55-1920.",
        "Regards to your team.\nPlease reset the VPN password for the Berlin office.",
        "$$$ ### %%%",
        "*** ### !!!",
    ]
    verdicts = [deduper.check(str(i), text) for i, text in enumerate(messages)]
    assert not any(v.duplicate for v in verdicts)


def test_code_keeps_lines_after_a_comment_that_looks_like_a_signature_delimiter() -> None:
    from services.curation.dedupe import DedupeConfig, Deduper

    deduper = Deduper(DedupeConfig())
    first = "def add(a, b):\n    return a + b\n-- \ndef sub(a, b):\n    return a - b"
    second = "def add(a, b):\n    return a + b\n-- \ndef mul(a, b):\n    return a * b"
    assert not deduper.check("g", first, prose=False).duplicate
    assert not deduper.check("h", second, prose=False).duplicate


def test_form_letters_to_different_customers_are_not_merged() -> None:
    """Many fixed numbers in the template (sections, dates, phone, branches) must not outvote the ones that
    differ: the account, the fee and the balance."""
    from services.curation.dedupe import DedupeConfig, Deduper

    template = (
        "Dear {name},\nWe are writing about your overdraft on account ending {account}. Under section 4.2 of our "
        "terms dated 01/04/2021, a fee of {fee} applies. The current balance is {balance}. If you believe this is "
        "wrong, call 0800 123 4567 between 9am and 5pm, Monday to Friday, or write to PO Box 1021, London EC1A 1BB. "
        "Our reference is 2023/OD/17. You can also visit any of our 350 branches. Please respond within 14 days "
        "of this letter, dated 12 March 2024.\nYours sincerely,\nCustomer Care")
    people = [("Maria Lopez", "4411", "£35.00", "£-1,250.17"), ("John Okafor", "9921", "£70.00", "£-3,980.02"),
              ("Wei Zhang", "1200", "£35.00", "£-88.40"), ("Ana Silva", "7310", "£105.00", "£-12,400.00")]
    deduper = Deduper(DedupeConfig())
    verdicts = [deduper.check(str(i), template.format(name=n, account=a, fee=f, balance=b))
                for i, (n, a, f, b) in enumerate(people)]
    assert not any(v.duplicate for v in verdicts)
    copy = template.format(name="Maria Lopez", account="4411", fee="£35.00", balance="£-1,250.17")
    assert deduper.check("fwd", "Fwd: overdraft\n\n" + copy.replace("  ", " ")).duplicate
