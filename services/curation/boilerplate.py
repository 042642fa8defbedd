"""Strip the e-mail boilerplate that makes copies of one message look like different documents.

Enterprise exports are full of the same text forwarded, replied to and re-sent: each copy
gains a ``Fwd:`` line, a ``-----Original Message-----`` header block, ``>`` quote markers,
a sign-off with a signature, a "Sent from my iPhone" line or a confidentiality notice.
None of that is the document, and on a short message it can be half of the words, so
near-duplicate detection compares texts with it removed (:func:`strip_boilerplate`).

The rules are line-based and conservative: a header line is removed only at the top of the
text or right after a forward/reply marker; a signature only from a sign-off line in the
last lines when every line after it is short, or as a last short paragraph with an e-mail
address, phone number or web address in it; a notice only at the end, from the start of
the sentence that carries a disclaimer phrase.  Patterns cover English, German, French,
Spanish and Dutch clients (Gmail, Outlook, Apple Mail, Thunderbird).  The same rules apply
to every document, so a rule that also removes a line of real content removes it from all
copies alike.  Not covered: signatures with neither a sign-off nor contact details,
notices in other languages or without a listed phrase, HTML.
"""

from __future__ import annotations

import re

_MAX_SIGNATURE_LINES = 12        # lines after a sign-off that can still be a signature block
_MAX_SIGNATURE_LINE_WORDS = 14   # a longer line after a sign-off is content, not a signature
_MAX_SIGN_OFF_WORDS = 3          # "Best regards," / "Many thanks, Ana" / "Mit freundlichen Grüßen"
_MAX_PASSES = 4                  # footer, then signature, then a tagline above it, ...
_MAX_CONTACT_LINES = 8           # a trailing paragraph this short, with contact details, is a signature
_NOTICE_LINES = 60               # trailing notices are looked for in this many last lines
_MARKER_FIRST = frozenset("-_bad ")   # first characters a marker line can start with
_ATTRIBUTION_VERBS = ("wrote", "crit", "schrieb", "escribi", "schreef", "geschreven")
_DISCLAIMER_WORDS = ("confiden", "privileg", "intended", "error", "disclaimer", "addressee", "unauthori",
                     "prohibited", "environment", "printing", "scanned", "virus", "vertraulich", "adressat",
                     "destinatai", "destinatari", "vertrouwelijk", "geadresseerde", "registered", "register",
                     "sitz der", "liabilit", "guarantee", "transmission", "construed", "haftung", "responsab")

_MARKER = re.compile(
    r"^\s*(?:"
    r"-{2,}\s*(?:forwarded message|original message|weitergeleitete nachricht|urspr[üu]ngliche nachricht"
    r"|message transf[ée]r[ée]|message d.origine|mensaje reenviado|mensaje original|doorgestuurd bericht"
    r"|oorspronkelijk bericht)\s*-{2,}"
    r"|begin forwarded message:?|anfang der weitergeleiteten nachricht:?|d[ée]but du message r[ée]exp[ée]di[ée]\s?:?"
    r"|_{8,}"
    r")\s*$", re.IGNORECASE)
# "On Mon, Jan 3, 2022 at 9:14 AM Ana <ana@x.com> wrote:" and its translations; clients wrap it onto two lines.
_ATTRIBUTION = re.compile(
    r"^\s*(?:on|le|am|el|op)\b[^\n]{0,200}(?:\n[^\n]{0,200})?"
    r"\b(?:wrote|a [ée]crit|schrieb|escribi[óo]|schreef|heeft geschreven)\s*:\s*$",
    re.IGNORECASE | re.MULTILINE)
_HEADER = re.compile(
    r"^\s*(?:from|sent|date|to|cc|bcc|subject|reply-to|importance|von|gesendet|an|betreff|datum|kopie"
    r"|de|envoy[ée]|[àa]|objet|date|para|enviado|asunto|fecha|aan|onderwerp|verzonden|van)\s*:", re.IGNORECASE)
_SUBJECT_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|wg|tr|sv|vs|rv|enc|antw)\s*:\s*)+", re.IGNORECASE)
_QUOTE_MARKS = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.MULTILINE)
_SIGN_OFF = re.compile(
    r"^\s*(?:best|kind|warm|warmest|many thanks|thanks|thank you|thx|cheers|regards|sincerely|best wishes"
    r"|all the best|respectfully|yours(?: sincerely| truly| faithfully)?|talk soon|speak soon"
    r"|mit freundlichen gr[üu](?:ß|ss)en|freundliche gr[üu](?:ß|ss)e|viele gr[üu](?:ß|ss)e|beste gr[üu](?:ß|ss)e"
    r"|liebe gr[üu](?:ß|ss)e|gru(?:ß|ss)|cordialement|bien [àa] vous|bien cordialement|merci"
    r"|saludos|un saludo|atentamente|met vriendelijke groet|groeten|pozdrawiam|med v[äa]nliga h[äa]lsningar)"
    r"(?:\s+(?:regards|wishes|again|so much|in advance))?\s*[,.!]?(?:\s*[-–—]?\s*\S+){0,3}\s*$",
    re.IGNORECASE)
_SIGNATURE_DELIMITER = re.compile(r"^--\s?$")
_TAGLINE = re.compile(
    r"^\s*(?:sent from my|sent from (?:outlook|mail|yahoo)|sent via|get outlook for|von meinem .{0,40} gesendet"
    r"|envoy[ée] de mon|enviado desde mi|verzonden vanaf mijn)", re.IGNORECASE)
_DISCLAIMER = re.compile(
    r"confidential|privileged|intended (?:solely |only )?for|intended recipient|(?:received|sent) (?:this|you)[^.]{0,40} in error"
    r"|disclaimer"
    r"|not the addressee|unauthori[sz]ed (?:use|disclosure|review)|strictly prohibited"
    r"|consider the environment|before printing|scanned for (?:viruses|malware)|virus[- ]free"
    r"|vertraulich|nicht der richtige adressat|confidentiel|destinataire|confidencial|destinatario"
    r"|vertrouwelijk|geadresseerde"
    r"|registered (?:office|in england|number)|company (?:number|registration)|handelsregister|amtsgericht"
    r"|sitz der gesellschaft|liability|cannot be guaranteed|e-?mail transmission|not be construed|solicitation"
    r"|haftung|responsabilit")                       # matched against lower-cased lines
_CONTACT = re.compile(r"\S@\S+\.[a-z]{2,}|\+?\d[\d ()./-]{7,}\d|www\.|https?://")
_SENTENCE_ENDS = (".", "!", "?", ";", ":")
_SEPARATOR_LINE = re.compile(r"^\s*(?:[-_=*~#]\s*){3,}$")


def strip_boilerplate(text: str) -> str:
    """``text`` without forward/reply headers, quote markers, signatures and trailing notices.

    Line breaks are kept (later rules need them); only whole lines are removed, except a
    subject prefix (``Fwd:``/``RE:``/``AW:``) on the first line, which drops that line.
    Cost: one lower-cased copy and a few anchored matches per line; the disclaimer search
    runs only on the last lines, and only when one of its key words occurs there.
    """
    if ">" in text:
        text = _QUOTE_MARKS.sub("", text)
    lower = text.lower()
    if any(word in lower for word in _ATTRIBUTION_VERBS):
        text = _ATTRIBUTION.sub("", text)
        lower = text.lower()
    lines, lowered = _drop_header_blocks(text.splitlines(), lower.splitlines())
    tail = "\n".join(lowered[-_NOTICE_LINES:])
    cues = any(word in tail for word in _DISCLAIMER_WORDS)
    for _ in range(_MAX_PASSES):
        before = len(lines)
        lines, lowered = _drop_trailing_notices(lines, lowered, cues)
        lines, lowered = _drop_signature(lines, lowered)
        if len(lines) == before:
            break
    stripped = "\n".join(lines)
    # Boilerplate frames a message; it is never the whole of it. A text that would lose everything
    # (a short note whose first line happens to read "Thanks for the update.") is compared as it is,
    # so unrelated short messages never share the empty text's digest.
    return stripped if stripped.strip() else text


def _drop_header_blocks(lines: list[str], lowered: list[str]) -> tuple[list[str], list[str]]:
    """Remove marker lines, the header lines right after them, and a header block or subject line on top."""
    keep: list[int] = []
    in_header = True          # the top of the text counts as the place a header block may start
    for index, line in enumerate(lowered):
        if line[:1] in _MARKER_FIRST and _MARKER.match(line):
            in_header = True
            continue
        if in_header:
            if not line.strip() or _HEADER.match(line) or (not keep and _SUBJECT_PREFIX.match(line)):
                continue
            in_header = False
        keep.append(index)
    if len(keep) == len(lines):
        return lines, lowered
    return [lines[i] for i in keep], [lowered[i] for i in keep]


def _drop_trailing_notices(lines: list[str], lowered: list[str], cues: bool) -> tuple[list[str], list[str]]:
    """Drop, from the end, blank lines, taglines and (when ``cues``) paragraphs that read like a disclaimer."""
    tail = max(0, len(lines) - _NOTICE_LINES)
    end = len(lines)
    while end > tail:
        last = lowered[end - 1]
        if not last.strip() or _SEPARATOR_LINE.match(last) or _TAGLINE.match(last):
            end -= 1
            continue
        if not cues:
            break
        start = _paragraph_start(lowered, tail, end)
        first = next((i for i in range(start, end) if _DISCLAIMER.search(lowered[i])), None)
        if first is None:
            break
        while first > start and not lowered[first - 1].rstrip().endswith(_SENTENCE_ENDS):
            first -= 1        # a wrapped notice: go back to the line its sentence starts on
        end = first
    return lines[:end], lowered[:end]


def _paragraph_start(lowered: list[str], tail: int, end: int) -> int:
    """First line of the paragraph that ends at ``end``: the line after a blank or separator line."""
    for index in range(end - 1, tail - 1, -1):
        if not lowered[index].strip() or _SEPARATOR_LINE.match(lowered[index]):
            return index + 1
    return tail


def _drop_signature(lines: list[str], lowered: list[str]) -> tuple[list[str], list[str]]:
    """Cut at a ``-- `` delimiter or a sign-off line when only short lines follow it."""
    for index in range(max(0, len(lines) - _MAX_SIGNATURE_LINES - 1), len(lines)):
        line = lowered[index]
        if index == 0 or not (_SIGNATURE_DELIMITER.match(line.rstrip())
                              or (_SIGN_OFF.match(line) and len(line.split()) <= _MAX_SIGN_OFF_WORDS)):
            continue        # a sign-off closes content above it, and is short ("Thanks for the update." is content)
        if all(len(rest.split()) <= _MAX_SIGNATURE_LINE_WORDS for rest in lowered[index + 1:]):
            return lines[:index], lowered[:index]
    return _drop_contact_block(lines, lowered)


def _drop_contact_block(lines: list[str], lowered: list[str]) -> tuple[list[str], list[str]]:
    """Drop a last paragraph of a few short lines holding an e-mail address, phone number or web address.

    That is a signature block without a sign-off ("Ana López | Analyst", "T +44 20 ...").
    """
    end = len(lines)
    while end and not lowered[end - 1].strip():
        end -= 1
    start = _paragraph_start(lowered, 0, end)
    block = lowered[start:end]
    if not block or len(block) > _MAX_CONTACT_LINES or start == 0:
        return lines, lowered
    if any(len(line.split()) > _MAX_SIGNATURE_LINE_WORDS for line in block):
        return lines, lowered
    if not _CONTACT.search("\n".join(block)):
        return lines, lowered
    return lines[:start], lowered[:start]
