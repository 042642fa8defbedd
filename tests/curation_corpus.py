"""A small raw corpus exercising every parser, filter and recipe, with planted problems."""

from __future__ import annotations

import gzip
import json

CANARY = "CANARY-5e1d-ZEBRA-QUILL-8841"


def raw_corpus() -> dict[str, bytes]:
    tickets = [
        {"id": f"T-{i}", "subject": f"Card problem {i}", "messages": [
            {"author_role": "customer", "body": f"Hello, my card ending {1000 + i} was declined at the shop "
                                                f"yesterday. Please call me at +1 415 555 01{i:02d}.",
             "created_at": "2026-01-01T10:00:00Z"},
            {"author_role": "agent", "body": "Thanks for reaching out. Travel mode was off; I enabled it and the "
                                             "card will work now. Reply if it fails again.",
             "created_at": "2026-01-01T10:05:00Z"}]}
        for i in range(12)]
    paired = [
        {"instruction": f"Explain our overdraft fee policy for account tier {i}.", "input": "",
         "output": f"Tier {i} accounts pay no fee for the first overdraft each month; after that a flat fee "
                   f"applies. Customers can contact jane.doe{i}@example.com for exceptions."}
        for i in range(20)]
    paired.append(dict(paired[0]))  # exact duplicate
    near = dict(paired[1])
    near["output"] = near["output"].replace("flat fee", "flat  fee") + " Thank you."
    paired.append(near)  # near duplicate
    paired.append({"instruction": "Internal note", "input": "",
                   "output": f"Escalation code {CANARY} must stay internal. The escalation desk reviews it daily "
                             "and replies within one business day to the branch that raised it."})
    jsonl = "\n".join(json.dumps(p) for p in paired) + "\n" + '{"instruction": "truncated line", "outp'
    markdown = ("# Payments handbook\n\n## Wire limits\n\nWires above 10,000 EUR need a second approver in the "
                "payments operations team before they are released to the network.\n\n## Cut-off times\n\n"
                "Same-day wires must be submitted before 15:00 local time; later ones go out the next "
                "business day after the morning reconciliation run.\n")
    csv = ("prompt,completion\n"
           "\"How do I order a new card?\",\"Open the app, choose Cards, then Replace card; it arrives in "
           "five business days.\"\n"
           "\"Can I change my PIN online?\",\"Yes: in the app under Cards, choose Change PIN and confirm with "
           "your passcode.\"\n")
    return {
        "tickets/export.json": json.dumps({"tickets": tickets}).encode(),
        "sft/pairs.jsonl": jsonl.encode(),
        "wiki/handbook.md": markdown.encode(),
        "faq/faq.csv": csv.encode(),
        "faq/faq-copy.csv.gz": gzip.compress(csv.encode()),
        "junk/blob.bin": bytes(range(256)) * 64,
        "junk/empty.txt": b"",
        "junk/latin1.txt": "Caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1") + b"\xff\xfe\xfa",
    }
