"""SIEM exports of the audit log: formats, transports and a resumable export loop.

Formats (pure functions of an ``AuditRecord``; ids, hashes and counts only, as the records):

* ``ocsf`` — ``to_ocsf(record) -> dict``: OCSF 1.5 events (API Activity, Authentication,
  Authorize Session), ``validate_ocsf(event)`` against py-ocsf-models; the severity that
  CEF and syslog reuse;
* ``cef`` — ``to_cef(record) -> str``: ArcSight CEF 0 lines;
* ``syslog`` — ``format_rfc5424(record, hostname=...) -> bytes`` with a ``privtune@32473``
  structured-data element, ``frame`` (RFC 5425 octet counting), ``TlsSyslogSender``
  (best-effort: plain syslog over TLS has no acknowledgement).

Transport with acknowledgement: ``relp`` — ``RelpClient(host, port, ssl_context).send(messages)``.

The loop: ``exporter`` — ``Exporter(name, fetch, sink, load_cursor, save_cursor)`` with
``step()`` and ``run(stop)``, and the sinks ``RelpSink``, ``TlsSyslogSink``, ``CallableSink``.

Receivers must accept large messages: the OCSF event of a maximal record (16 KiB of
canonical JSON, whose text repeats in the actor fields, in ``unmapped`` and, escaped once
more, in ``raw_data``) reaches about 100 KiB. Set rsyslog's ``global(maxMessageSize=...)``
and imrelp's ``maxDataSize`` to 256k.
"""
