"""Every session's subscriptions, indexed so that matching a topic costs what the matches cost, not what the
number of subscriptions costs: filters without wildcards in a map by filter, filters with `+` or `#` in a
trie by level.

A topic is matched by one map lookup and a walk of the trie along its levels, visiting only the branches
that can match (the level itself, `+`, `#`); a `$` topic skips wildcards at the first level (MQTT-4.7.2-1),
and `#` needs at least one more level (AWS IoT: `sensor/#` does not match `sensor`). Each node keeps its
subscribers by session: plain subscriptions, and shared ones by share name (one group per share name and
filter). Sessions are indexed whether a connection holds them or not, so messages reach persistent sessions
that are away. `SessionStore` keeps the index in step with each session's own `subscriptions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulator.mqtt.sessions import SessionState, Subscription

Members = dict["SessionState", "Subscription"]


class _Node:
    __slots__ = ("children", "plain", "shared")

    def __init__(self) -> None:
        self.children: dict[str, _Node] | None = None
        self.plain: Members | None = None
        self.shared: dict[str, Members] | None = None

    def empty(self) -> bool:
        return not self.children and not self.plain and not self.shared


def _has_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


class SubscriptionIndex:
    def __init__(self) -> None:
        self._exact: dict[str, _Node] = {}
        self._root = _Node()
        self.count = 0

    # ---------------------------------------------------------------- changes
    def add(self, state: SessionState, subscription: Subscription) -> None:
        node = self._node(subscription.topic_filter, create=True)
        assert node is not None
        members = _members(node, subscription.share, create=True)
        assert members is not None
        if state not in members:
            self.count += 1
        members[state] = subscription

    def remove(self, state: SessionState, subscription: Subscription) -> None:
        topic_filter = subscription.topic_filter
        if not _has_wildcard(topic_filter):
            node = self._exact.get(topic_filter)
            if node is not None and self._drop(node, state, subscription.share) and node.empty():
                del self._exact[topic_filter]
            return
        levels = topic_filter.split("/")
        path = [self._root]
        for level in levels:
            children = path[-1].children
            child = children.get(level) if children else None
            if child is None:
                return
            path.append(child)
        if not self._drop(path[-1], state, subscription.share):
            return
        for depth in range(len(path) - 1, 0, -1):  # prune the branch back to the first node still in use
            node = path[depth]
            if not node.empty():
                break
            parent = path[depth - 1]
            assert parent.children is not None
            del parent.children[levels[depth - 1]]
            if not parent.children:
                parent.children = None

    def _drop(self, node: _Node, state: SessionState, share: str | None) -> bool:
        members = _members(node, share, create=False)
        if not members or members.pop(state, None) is None:
            return False
        self.count -= 1
        if not members:
            if share is None:
                node.plain = None
            else:
                assert node.shared is not None
                del node.shared[share]
                if not node.shared:
                    node.shared = None
        return True

    def _node(self, topic_filter: str, *, create: bool) -> _Node | None:
        if not _has_wildcard(topic_filter):
            node = self._exact.get(topic_filter)
            if node is None and create:
                node = self._exact[topic_filter] = _Node()
            return node
        node = self._root
        for level in topic_filter.split("/"):
            if node.children is None:
                if not create:
                    return None
                node.children = {}
            child = node.children.get(level)
            if child is None:
                if not create:
                    return None
                child = node.children[level] = _Node()
            node = child
        return node

    # ---------------------------------------------------------------- matching
    def nodes(self, topic: str) -> list[_Node]:
        """The nodes whose filter matches `topic` (some may hold only longer filters' branches)."""
        found: list[_Node] = []
        exact = self._exact.get(topic)
        if exact is not None:
            found.append(exact)
        if self._root.children is None:
            return found
        levels = topic.split("/")
        last = len(levels) - 1
        dollar = topic.startswith("$")
        stack = [(self._root, 0)]
        while stack:
            node, depth = stack.pop()
            children = node.children
            if children is None:
                continue
            if not (dollar and depth == 0):
                every = children.get("#")
                if every is not None:
                    found.append(every)  # depth <= last: at least one level is left for `#`
                one = children.get("+")
                if one is not None:
                    if depth == last:
                        found.append(one)
                    else:
                        stack.append((one, depth + 1))
            child = children.get(levels[depth])
            if child is not None:
                if depth == last:
                    found.append(child)
                else:
                    stack.append((child, depth + 1))
        return found

    def best_for(self, state: SessionState, topic: str) -> Subscription | None:
        """The highest-QoS subscription of `state` matching `topic` (shared ones included)."""
        best = None
        for node in self.nodes(topic):
            candidates = [node.plain.get(state)] if node.plain else []
            if node.shared:
                candidates += [members.get(state) for members in node.shared.values()]
            for subscription in candidates:
                if subscription is not None and (best is None or subscription.qos > best.qos):
                    best = subscription
        return best


def _members(node: _Node, share: str | None, *, create: bool) -> Members | None:
    if share is None:
        if node.plain is None and create:
            node.plain = {}
        return node.plain
    if node.shared is None:
        if not create:
            return None
        node.shared = {}
    members = node.shared.get(share)
    if members is None and create:
        members = node.shared[share] = {}
    return members
