"""The DNS side: names, wire encoding, the zone store of encoded records, and the answer path."""
