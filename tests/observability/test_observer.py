"""The observer seam (gateway/observability/observer.py): ``Observers`` tells every observer."""

from __future__ import annotations

import inspect

from gateway.observability.observer import JobObserver, Observers


def test_observers_pass_on_every_event_the_seam_has() -> None:
    """An event ``Observers`` does not override would reach nobody (the base ignores it):
    a new hook on ``JobObserver`` must be passed on too."""
    events = [
        name
        for name, member in inspect.getmembers(JobObserver, inspect.isfunction)
        if not name.startswith("_")
    ]
    assert events
    missing = [name for name in events if name not in vars(Observers)]
    assert missing == []


def test_each_event_reaches_each_observer_in_order() -> None:
    heard: list[tuple[str, str]] = []

    class Recording(JobObserver):
        def __init__(self, name: str) -> None:
            self.name = name

        def webhook_arrived(self, provider: str) -> None:
            heard.append((self.name, provider))

        def provider_ended(self, provider: str, via: str) -> None:
            heard.append((self.name, f"{provider}:{via}"))

    both = Observers(Recording("metrics"), Recording("log"))
    both.webhook_arrived("fal")
    both.provider_ended("replicate", "webhook")

    assert heard == [
        ("metrics", "fal"),
        ("log", "fal"),
        ("metrics", "replicate:webhook"),
        ("log", "replicate:webhook"),
    ]
