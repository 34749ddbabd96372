"""Stripping pods: what a record's timestamps mean."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from server.sources.pods import pod_record


def _rfc3339_seconds(text: str) -> float | None:
    """The meaning: Unix seconds of an ISO 8601 / RFC 3339 timestamp, or None."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


# The API's own form with fields at and past their limits, and near-misses of it.
_API_FORM = st.builds(
    lambda y, mo, d, h, mi, s: f"{y}-{mo}-{d}T{h}:{mi}:{s}Z",
    st.integers(1969, 2100),
    _two(0, 13),
    _two(0, 32),
    _two(0, 25),
    _two(0, 61),
    _two(0, 61),
)
_NEAR_MISSES = st.text(alphabet="0123456789-T:Z+. ٣", min_size=19, max_size=21)
_STAMPS = st.one_of(_API_FORM, _NEAR_MISSES, st.sampled_from(["2026-11-01T10:00:00.5Z", "2026-11-01T10:00:00+02:00"]))


@settings(max_examples=1000, deadline=None)
@given(created=_STAMPS, ready_at=_STAMPS)
def test_timestamps_mean_what_rfc3339_says(created, ready_at):
    record = pod_record("p", "default", "u", created, None, None, None, False, "Running", [], None, [("Ready", "True", ready_at)])
    expected_created = _rfc3339_seconds(created)
    assert record.created == (float("inf") if expected_created is None else expected_created)
    known = [t for t in (expected_created, _rfc3339_seconds(ready_at)) if t is not None]
    assert record.changed_at == (max(known) if known else None)
