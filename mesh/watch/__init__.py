"""Following the registry's event stream (``EventService.Watch``) with lossless resume."""

from mesh.watch.subscription import Subscription, WatchHandler

__all__ = ["Subscription", "WatchHandler"]
