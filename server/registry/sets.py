"""Set names (`<subdomain>.<namespace>.<zone>`): the join of their members' address records.

A set's A and AAAA RRsets are the concatenation of its members' own encoded
RRsets, never encoded again. Members are the identity names whose owners
belong to the set; each member's IPs are the ones it owns, so no address
appears twice.
"""

from __future__ import annotations

A_RECORD_SIZE = 16  # a pointer-owned A record: 12 bytes of header fields + 4 of address
AAAA_RECORD_SIZE = 28


class SetMembers:
    """Member name -> (encoded A RRset, encoded AAAA RRset), in the order members joined."""

    __slots__ = ("members",)

    def __init__(self) -> None:
        self.members: dict[bytes, tuple[bytes, bytes]] = {}

    def a_body(self) -> bytes:
        return b"".join([a for a, _ in self.members.values()])

    def aaaa_body(self) -> bytes:
        return b"".join([aaaa for _, aaaa in self.members.values() if aaaa])


class SetJoins:
    """Every set with members; the registry writes members first, then the joins."""

    __slots__ = ("_sets", "set_of_override")

    def __init__(self) -> None:
        self._sets: dict[bytes, SetMembers] = {}
        # member -> its set, for members whose name is not in their set (a hostnameOverride):
        # for every other member the set is the name's parent.
        self.set_of_override: dict[bytes, bytes] = {}

    def reserve(self, set_name: bytes, member: bytes) -> None:
        """Keep a place for a member about to be written (joins keep member order stable)."""
        members = self._sets.get(set_name)
        if members is None:
            members = self._sets[set_name] = SetMembers()
        members.members.setdefault(member, (b"", b""))

    def update(self, set_name: bytes, member: bytes, a_body: bytes, aaaa_body: bytes) -> None:
        members = self._sets.get(set_name)
        if members is None:
            members = self._sets[set_name] = SetMembers()
        members.members[member] = (a_body, aaaa_body)

    def drop(self, set_name: bytes, member: bytes) -> None:
        members = self._sets.get(set_name)
        if members is not None and members.members.pop(member, None) is not None and not members.members:
            del self._sets[set_name]

    def get(self, set_name: bytes) -> SetMembers | None:
        return self._sets.get(set_name)

    def __contains__(self, set_name: object) -> bool:
        return set_name in self._sets

    def __len__(self) -> int:
        return len(self._sets)
