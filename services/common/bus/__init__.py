"""The event bus: a small protocol with backends picked by URI scheme.

    from services.common.bus import open_bus
    bus = open_bus("sqlite:///var/privtune/events.db")   # or "kafka://127.0.0.1:9092"
"""

from services.common.bus.protocol import EventBus, Message, Record, Subscription
from services.common.bus.registry import open_bus, register_backend

__all__ = ["EventBus", "Message", "Record", "Subscription", "open_bus", "register_backend"]
