"""Topic names, topic filters, shared subscriptions and AWS IoT's matching rules (3.1.1 and 5 alike)."""

from __future__ import annotations

SHARE_PREFIX = "$share/"


def valid_topic_name(topic: str) -> bool:
    return bool(topic) and "+" not in topic and "#" not in topic


def valid_topic_filter(topic_filter: str) -> bool:
    if not topic_filter:
        return False
    if topic_filter.startswith(SHARE_PREFIX):
        return split_shared(topic_filter) is not None
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def split_shared(topic_filter: str) -> tuple[str, str] | None:
    """(share name, topic filter) of `$share/{ShareName}/{TopicFilter}`; None if it is malformed.
    AWS IoT supports shared subscriptions in 3.1.1 and 5 (mqtt.html, "Shared Subscriptions"); the share
    name has no `/`, `+` or `#` (MQTT 5 section 4.8.2)."""
    rest = topic_filter[len(SHARE_PREFIX) :]
    share, slash, inner = rest.partition("/")
    if not share or not slash or "+" in share or "#" in share:
        return None
    if not inner or inner.startswith(SHARE_PREFIX) or not valid_topic_filter(inner):
        return None
    return share, inner


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching; a `$` topic never matches a filter starting with a wildcard (MQTT-4.7.2-1).
    AWS IoT: `sensor/#` does not match the parent `sensor` (mqtt.html, differences from the spec)."""
    if topic_filter == topic:
        return True
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return len(topic_levels) > index
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)
