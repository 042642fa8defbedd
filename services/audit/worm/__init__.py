"""Write-once (WORM) storage of sealed audit segments, chosen by URI scheme.

``open_segment_store("file:///var/lib/privtune/audit")`` or
``open_segment_store("s3://bucket/audit?endpoint_url=...")`` gives a ``SegmentStore``;
``protocol`` says what every backend guarantees, and tests/contract/test_worm_contract.py
checks it against each.
"""

from services.audit.worm.protocol import (Retention, SegmentExists, SegmentRead, SegmentStore, check_segment_name,
                                          check_tenant_id)
from services.audit.worm.registry import open_segment_store, register_segment_store, supported_schemes

__all__ = ["Retention", "SegmentExists", "SegmentRead", "SegmentStore", "check_segment_name", "check_tenant_id",
           "open_segment_store", "register_segment_store", "supported_schemes"]
