"""Key history: building, JSON round trips, every verification rule, tampering, key status."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.errors import KeyHistoryError
from mesh.keyhistory import FORMAT, Inception, KeyHistory, KeyStatus, Rotation
from mesh.keyhistory.entry import inception_signing_input, rotation_signing_input
from mesh.keys import IdentityKey

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def _keys(n: int, base: int = 1) -> list[IdentityKey]:
    return [IdentityKey.from_seed((base + i).to_bytes(32, "big")) for i in range(n)]


def _chain(keys: list[IdentityKey], start: datetime = T0, step: timedelta = 30 * DAY) -> KeyHistory:
    history = KeyHistory.incept(keys[0], start)
    for i in range(1, len(keys)):
        history = history.rotate(keys[i - 1], keys[i], start + i * step)
    return history


def _fails(text: str, rule: str | None = None, entry: int | None = None) -> KeyHistoryError:
    with pytest.raises(KeyHistoryError) as info:
        KeyHistory.from_json(text)
    message = str(info.value)
    if rule is not None:
        assert f"rule {rule!r}" in message, message
    if entry is not None:
        assert f"entry {entry}:" in message, message
    return info.value


# -- building and reading -----------------------------------------------------------------


def test_inception() -> None:
    key = _keys(1)[0]
    history = KeyHistory.incept(key, T0)
    assert history.did == key.did()
    assert history.current.kid == key.kid
    assert history.current.public_key == key.public_key
    assert history.inception == history.current
    assert len(history) == 1
    [period] = history.periods
    assert (period.index, period.valid_from, period.rotated_at) == (0, T0, None)
    assert KeyHistory.from_json(history.to_json()) == history


def test_rotation_chain_and_periods() -> None:
    keys = _keys(4)
    history = _chain(keys)
    assert history.did == keys[0].did()
    assert history.current.kid == keys[3].kid
    assert [p.kid for p in history.periods] == [k.kid for k in keys]
    assert [p.valid_from for p in history.periods] == [T0 + i * 30 * DAY for i in range(4)]
    assert [p.rotated_at for p in history.periods] == [T0 + i * 30 * DAY for i in (1, 2, 3)] + [
        None
    ]
    parsed = KeyHistory.from_json(history.to_json())
    assert parsed == history
    assert parsed.to_json() == history.to_json()
    assert parsed.head_hash == history.head_hash
    assert isinstance(parsed.entries[0], Inception)
    assert all(isinstance(e, Rotation) for e in parsed.entries[1:])


def test_rotate_returns_a_new_history() -> None:
    k0, k1 = _keys(2)
    first = KeyHistory.incept(k0, T0)
    second = first.rotate(k0, k1, T0 + DAY)
    assert len(first) == 1 and first.current.kid == k0.kid
    assert len(second) == 2 and second.current.kid == k1.kid
    assert first.is_prefix_of(second) and not second.is_prefix_of(first)
    assert first.head_hash != second.head_hash


def test_json_document_shape() -> None:
    doc = json.loads(_chain(_keys(2)).to_json())
    assert doc["format"] == FORMAT == "trustmesh-key-history/v1"
    assert set(doc["entries"][0]) == {
        "type",
        "index",
        "did",
        "public_key",
        "kid",
        "at",
        "signature",
    }
    assert set(doc["entries"][1]) == {
        "type",
        "index",
        "previous_hash",
        "previous_kid",
        "public_key",
        "kid",
        "at",
        "signature_current",
        "signature_next",
    }
    assert doc["entries"][0]["at"] == "2026-01-01T00:00:00Z"


def test_microsecond_times_round_trip() -> None:
    k0, k1 = _keys(2)
    at = T0 + timedelta(microseconds=7)
    history = KeyHistory.incept(k0, T0).rotate(k0, k1, at)
    assert '"2026-01-01T00:00:00.000007Z"' in history.to_json()
    assert KeyHistory.from_json(history.to_json()).current.valid_from == at


def test_times_in_other_zones_are_normalised() -> None:
    key = _keys(1)[0]
    plus2 = datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert KeyHistory.incept(key, plus2).current.valid_from == T0


# -- status and lookups -------------------------------------------------------------------


def test_status_at() -> None:
    k0, k1, k2 = _keys(3)
    history = _chain([k0, k1])  # k1 from T0 + 30d
    rotated = T0 + 30 * DAY
    grace = timedelta(hours=1)
    assert history.status_at(k1.kid, rotated, grace) is KeyStatus.CURRENT
    assert history.status_at(k1.kid, rotated + 400 * DAY, grace) is KeyStatus.CURRENT
    assert history.status_at(k1.kid, rotated - timedelta(seconds=1), grace) is KeyStatus.UNKNOWN
    assert history.status_at(k0.kid, T0, grace) is KeyStatus.ROTATED_IN_GRACE
    assert history.status_at(k0.kid, rotated - DAY, grace) is KeyStatus.ROTATED_IN_GRACE
    assert history.status_at(k0.kid, rotated + grace, grace) is KeyStatus.ROTATED_IN_GRACE
    assert (
        history.status_at(k0.kid, rotated + grace + timedelta(microseconds=1), grace)
        is KeyStatus.ROTATED
    )
    assert history.status_at(k0.kid, rotated, timedelta(0)) is KeyStatus.ROTATED_IN_GRACE
    assert history.status_at(k0.kid, rotated + timedelta(seconds=1), timedelta(0)) is (
        KeyStatus.ROTATED
    )
    assert history.status_at(k0.kid, T0 - DAY, grace) is KeyStatus.UNKNOWN
    assert history.status_at(k2.kid, rotated, grace) is KeyStatus.UNKNOWN
    assert history.status_at("not-a-kid", rotated, grace) is KeyStatus.UNKNOWN
    with pytest.raises(ValueError, match="negative"):
        history.status_at(k0.kid, rotated, -grace)
    with pytest.raises(KeyHistoryError, match="naive"):
        history.status_at(k0.kid, datetime(2026, 1, 1), grace)


def test_key_at_period_for_active_at() -> None:
    k0, k1, k2 = _keys(3)
    history = _chain([k0, k1])
    rotated = T0 + 30 * DAY
    assert history.key_at(k0.kid, T0).kid == k0.kid
    assert history.key_at(k0.kid, rotated - timedelta(microseconds=1)).index == 0
    assert history.key_at(k1.kid, rotated).index == 1
    with pytest.raises(KeyHistoryError, match="was not its current key"):
        history.key_at(k0.kid, rotated)
    with pytest.raises(KeyHistoryError, match="was not its current key"):
        history.key_at(k1.kid, T0)
    with pytest.raises(KeyHistoryError, match="is not a key of did:mesh:"):
        history.key_at(k2.kid, T0)
    assert history.period_for(k1.kid) == history.current
    assert history.period_for(k2.kid) is None
    assert history.active_at(T0 - DAY) is None
    assert history.active_at(T0 + DAY) == history.inception
    assert history.active_at(rotated) == history.current


# -- rotate() refuses bad rotations --------------------------------------------------------


def test_rotate_by_a_key_that_is_not_current() -> None:
    k0, k1, k2 = _keys(3)
    history = _chain([k0, k1])
    with pytest.raises(KeyHistoryError, match="rule 'current-key'"):
        history.rotate(k0, k2, T0 + 90 * DAY)


@pytest.mark.parametrize("reuse", [0, 1])
def test_rotate_to_a_used_key(reuse: int) -> None:
    keys = _keys(2)
    history = _chain(keys)
    with pytest.raises(KeyHistoryError, match="rule 'key-reuse'"):
        history.rotate(keys[1], keys[reuse], T0 + 90 * DAY)


@pytest.mark.parametrize("delta", [timedelta(0), -DAY])
def test_rotate_not_after_last_entry(delta: timedelta) -> None:
    k0, k1 = _keys(2)
    with pytest.raises(KeyHistoryError, match="rule 'time-order'"):
        KeyHistory.incept(k0, T0).rotate(k0, k1, T0 + delta)


def test_naive_times_refused() -> None:
    k0, k1 = _keys(2)
    with pytest.raises(KeyHistoryError, match="naive datetime"):
        KeyHistory.incept(k0, datetime(2026, 1, 1))
    with pytest.raises(KeyHistoryError, match="naive datetime"):
        KeyHistory.incept(k0, T0).rotate(k0, k1, datetime(2026, 2, 1))


# -- verification: tampering -----------------------------------------------------------------


def _mutate_char(value: str, position: int) -> str:
    c = value[position]
    if c.isdigit():
        replacement = "7" if c != "7" else "8"
    elif c.isalpha():
        replacement = "A" if c != "A" else "B"
    else:
        replacement = "x"
    return value[:position] + replacement + value[position + 1 :]


def test_changing_any_character_of_any_value_fails() -> None:
    text = _chain(_keys(3)).to_json()
    doc = json.loads(text)
    tried = 0
    for index, entry in enumerate(doc["entries"]):
        for field, value in entry.items():
            positions = range(len(str(value)))
            for position in positions:
                tampered = json.loads(text)
                if isinstance(value, int):
                    tampered["entries"][index][field] = value + 1
                else:
                    tampered["entries"][index][field] = _mutate_char(value, position)
                _fails(json.dumps(tampered), entry=None)
                tried += 1
    assert tried > 900


def test_changing_any_byte_of_the_document_fails() -> None:
    text = _chain(_keys(2)).to_json()
    tried = 0
    for position, c in enumerate(text):
        if c.isspace():
            continue  # JSON whitespace is not content
        for replacement in ("A", "7", "_", '"'):
            if replacement == c:
                continue
            tampered = text[:position] + replacement + text[position + 1 :]
            with pytest.raises(KeyHistoryError):
                KeyHistory.from_json(tampered)
            tried += 1
    assert tried > 3000


@pytest.mark.parametrize(
    ("field", "rule"),
    [
        ("public_key", "kid"),
        ("kid", "kid"),
        ("previous_kid", "previous-kid"),
        ("previous_hash", "chain"),
        ("signature_current", "signature-current"),
        ("signature_next", "signature-next"),
        ("at", "signature-current"),
    ],
)
def test_each_rotation_field_names_its_rule(field: str, rule: str) -> None:
    history = _chain(_keys(3))
    doc = json.loads(history.to_json())
    entry = doc["entries"][2]
    if field == "at":
        entry["at"] = "2026-03-02T00:00:01Z"
    elif field == "public_key":
        # A valid key, but not the one the kid names.
        entry["public_key"] = json.loads(_chain(_keys(1, base=70)).to_json())["entries"][0][
            "public_key"
        ]
    else:
        entry[field] = entry[field][:-3] + ("AAA" if entry[field][-3:] != "AAA" else "BBA")
    _fails(json.dumps(doc), rule=rule, entry=2)


def test_each_inception_field_names_its_rule() -> None:
    other = _keys(1, base=99)[0]
    doc = json.loads(KeyHistory.incept(_keys(1)[0], T0).to_json())
    cases: dict[str, tuple[object, str]] = {
        "did": (str(other.did()), "did"),
        "kid": (other.kid, "kid"),
        "at": ("2026-01-01T00:00:01Z", "signature"),
        "signature": ("A" * 86, "signature"),
    }
    for field, (value, rule) in cases.items():
        tampered = json.loads(json.dumps(doc))
        tampered["entries"][0][field] = value
        if field == "did":
            tampered["did"] = value
        _fails(json.dumps(tampered), rule=rule, entry=0)


def test_inception_signed_by_another_key() -> None:
    key, other = _keys(2)
    good = KeyHistory.incept(key, T0).entries[0]
    assert isinstance(good, Inception)
    forged = dataclasses.replace(
        good, signature=other.sign(inception_signing_input(good.did, key.public_key, T0))
    )
    with pytest.raises(KeyHistoryError, match="entry 0: rule 'signature'"):
        KeyHistory([forged])


def test_weak_inception_key_rejected() -> None:
    doc = json.loads(KeyHistory.incept(_keys(1)[0], T0).to_json())
    doc["entries"][0]["public_key"] = (
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"  # identity point
    )
    _fails(json.dumps(doc), rule="weak-key", entry=0)


def test_document_did_must_match_inception() -> None:
    doc = json.loads(_chain(_keys(2)).to_json())
    doc["did"] = str(_keys(1, base=50)[0].did())
    _fails(json.dumps(doc), rule="did")


# -- verification: one of two signatures ------------------------------------------------------


def _rotation(
    history: KeyHistory,
    current: IdentityKey,
    next_key: IdentityKey,
    at: datetime,
    *,
    by_current: IdentityKey | None = None,
    by_next: IdentityKey | None = None,
) -> Rotation:
    """A rotation entry with signatures made by the given keys (default: the right ones)."""
    index = len(history)
    signed = rotation_signing_input(
        str(history.did), index, history.head_hash, current.public_key, next_key.public_key, at
    )
    return Rotation(
        index=index,
        previous_hash=history.head_hash,
        previous_kid=current.kid,
        public_key=next_key.public_key,
        kid=next_key.kid,
        at=at,
        signature_current=(by_current or current).sign(signed),
        signature_next=(by_next or next_key).sign(signed),
    )


def test_rotation_signed_only_by_the_current_key_fails() -> None:
    k0, k1 = _keys(2)
    history = KeyHistory.incept(k0, T0)
    entry = _rotation(history, k0, k1, T0 + DAY, by_next=k0)
    with pytest.raises(KeyHistoryError, match="entry 1: rule 'signature-next'"):
        KeyHistory((*history.entries, entry))
    # The same through JSON, as a peer would receive it.
    doc = json.loads(history.to_json())
    doc["entries"].append(entry.to_json_obj())
    _fails(json.dumps(doc), rule="signature-next", entry=1)


def test_rotation_signed_only_by_the_next_key_fails() -> None:
    k0, k1 = _keys(2)
    history = KeyHistory.incept(k0, T0)
    entry = _rotation(history, k0, k1, T0 + DAY, by_current=k1)
    with pytest.raises(KeyHistoryError, match="entry 1: rule 'signature-current'"):
        KeyHistory((*history.entries, entry))


def test_rotation_signed_by_a_stranger_fails() -> None:
    k0, k1, mallory = _keys(3)
    history = KeyHistory.incept(k0, T0)
    entry = _rotation(history, k0, k1, T0 + DAY, by_current=mallory)
    with pytest.raises(KeyHistoryError, match="rule 'signature-current'"):
        KeyHistory((*history.entries, entry))


def test_well_signed_rotation_back_to_an_old_key_fails() -> None:
    k0, k1 = _keys(2)
    history = _chain([k0, k1])
    entry = _rotation(history, k1, k0, T0 + 90 * DAY)
    with pytest.raises(KeyHistoryError, match="entry 2: rule 'key-reuse'"):
        KeyHistory((*history.entries, entry))


def test_well_signed_rotation_back_in_time_fails() -> None:
    k0, k1 = _keys(2)
    history = KeyHistory.incept(k0, T0)
    for at in (T0, T0 - DAY):
        entry = _rotation(history, k0, k1, at)
        with pytest.raises(KeyHistoryError, match="entry 1: rule 'time-order'"):
            KeyHistory((*history.entries, entry))


# -- verification: replay and reordering ------------------------------------------------------


def test_entry_replayed_from_another_history_fails() -> None:
    a0, a1 = _keys(2, base=1)
    b0, b1 = _keys(2, base=10)
    a = _chain([a0, a1])
    b = _chain([b0, b1])
    doc = json.loads(a.to_json())
    doc["entries"][1] = json.loads(b.to_json())["entries"][1]
    _fails(json.dumps(doc), entry=1)
    # Even with index, chain and previous kid fixed up, the signatures bind the DID.
    replayed = dict(doc["entries"][1])
    original = json.loads(a.to_json())["entries"][1]
    for field in ("previous_hash", "previous_kid"):
        replayed[field] = original[field]
    doc["entries"][1] = replayed
    _fails(json.dumps(doc), rule="signature-current", entry=1)


def test_rotation_from_the_same_keys_under_another_did_fails() -> None:
    # b0 rotates to a1 in history B; its entry cannot be grafted onto A (a0 -> a1).
    a0, a1 = _keys(2, base=1)
    b0 = _keys(1, base=20)[0]
    a = KeyHistory.incept(a0, T0)
    b = KeyHistory.incept(b0, T0).rotate(b0, a1, T0 + DAY)
    b_entry = b.entries[1]
    assert isinstance(b_entry, Rotation)
    grafted = dataclasses.replace(b_entry, previous_hash=a.head_hash, previous_kid=a0.kid)
    with pytest.raises(KeyHistoryError, match="rule 'signature-current'"):
        KeyHistory((*a.entries, grafted))


def test_dropping_or_reordering_entries_fails() -> None:
    doc = json.loads(_chain(_keys(4)).to_json())
    dropped = dict(doc, entries=[doc["entries"][0], *doc["entries"][2:]])
    _fails(json.dumps(dropped), rule="index", entry=1)
    swapped = dict(doc, entries=[doc["entries"][0], doc["entries"][2], doc["entries"][1]])
    _fails(json.dumps(swapped), rule="index", entry=1)
    no_inception = dict(doc, entries=doc["entries"][1:])
    _fails(json.dumps(no_inception), rule="inception-first", entry=0)
    two_inceptions = dict(doc, entries=[doc["entries"][0], doc["entries"][0]])
    _fails(json.dumps(two_inceptions), rule="single-inception", entry=1)


# -- verification: shape and encodings --------------------------------------------------------


def _doc() -> dict[str, object]:
    return json.loads(_chain(_keys(2)).to_json())  # type: ignore[no-any-return]


def _with_entry_field(field: str, value: object, entry: int = 1) -> str:
    doc = _doc()
    doc["entries"][entry][field] = value  # type: ignore[index]
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "json"),
        ("{", "json"),
        ("[]", "shape"),
        ('"x"', "shape"),
        ("{}", "shape"),
        ('{"format": "trustmesh-key-history/v1", "did": "x", "entries": []}', "shape"),
        ('{"format": "trustmesh-key-history/v1", "did": "x", "entries": {}}', "shape"),
        ('{"format": "other/v9", "did": "x", "entries": [{}]}', "format"),
        ('{"format": "trustmesh-key-history/v1", "did": "x", "entries": [1]}', "shape"),
        ("[" * 100_000, "json"),
    ],
)
def test_malformed_documents(text: str, rule: str) -> None:
    _fails(text, rule=rule)


def test_malformed_fields() -> None:
    at = "2026-01-31T00:00:00Z"
    cases = [
        (_with_entry_field("at", at.replace("Z", "+00:00")), "encoding"),
        (_with_entry_field("at", at.replace("Z", ".000000Z")), "encoding"),
        (_with_entry_field("at", "2026-1-31T00:00:00Z"), "encoding"),
        (_with_entry_field("at", "2026-02-30T00:00:00Z"), "encoding"),
        (_with_entry_field("at", 1767225600), "shape"),
        (_with_entry_field("public_key", _doc()["entries"][1]["public_key"] + "="), "encoding"),  # type: ignore[index]
        (_with_entry_field("public_key", "+/" * 21 + "A"), "encoding"),
        (_with_entry_field("index", True), "index"),
        (_with_entry_field("index", "1"), "index"),
        (_with_entry_field("type", "revocation"), "shape"),
        (_with_entry_field("extra", 1), "shape"),
        (_with_entry_field("signature_next", None), "shape"),
    ]
    for text, rule in cases:
        _fails(text, rule=rule, entry=1)
    doc = _doc()
    del doc["entries"][1]["kid"]  # type: ignore[index]
    _fails(json.dumps(doc), rule="shape", entry=1)
    doc = _doc()
    doc["extra"] = 1
    _fails(json.dumps(doc), rule="shape")


def test_bytes_input() -> None:
    history = _chain(_keys(2))
    assert KeyHistory.from_json(history.to_json().encode()) == history
    _fails(b"\xff\xfe", rule="encoding")


# -- property: random rotation chains -------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seeds=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=6, unique=True),
    steps=st.lists(st.integers(min_value=1, max_value=10**12), min_size=5, max_size=5),
    probe=st.integers(min_value=-(10**12), max_value=6 * 10**12),
    grace_us=st.integers(min_value=0, max_value=10**11),
    tamper=st.tuples(st.integers(min_value=0), st.integers(min_value=0), st.integers(min_value=0)),
)
def test_random_chains(
    seeds: list[bytes],
    steps: list[int],
    probe: int,
    grace_us: int,
    tamper: tuple[int, int, int],
) -> None:
    keys = [IdentityKey.from_seed(s) for s in seeds]
    times = [T0]
    for step in steps[: len(keys) - 1]:
        times.append(times[-1] + timedelta(microseconds=step))
    history = KeyHistory.incept(keys[0], times[0])
    for i in range(1, len(keys)):
        history = history.rotate(keys[i - 1], keys[i], times[i])

    parsed = KeyHistory.from_json(history.to_json())
    assert parsed == history
    assert str(parsed.did) == str(keys[0].did())
    assert [p.kid for p in parsed.periods] == [k.kid for k in keys]
    assert [p.valid_from for p in parsed.periods] == times
    assert parsed.current.public_key == keys[-1].public_key

    # Status agrees with the periods, for an arbitrary instant and grace.
    when = T0 + timedelta(microseconds=probe)
    grace = timedelta(microseconds=grace_us)
    for period in parsed.periods:
        status = parsed.status_at(period.kid, when, grace)
        if when < period.valid_from:
            assert status is KeyStatus.UNKNOWN
        elif period.rotated_at is None:
            assert status is KeyStatus.CURRENT
        elif when <= period.rotated_at + grace:
            assert status is KeyStatus.ROTATED_IN_GRACE
        else:
            assert status is KeyStatus.ROTATED
    active = parsed.active_at(when)
    assert active is None or parsed.key_at(active.kid, when) == active

    # Any change to any field of any entry is detected.
    doc = json.loads(history.to_json())
    entry = doc["entries"][tamper[0] % len(doc["entries"])]
    field = sorted(entry)[tamper[1] % len(entry)]
    value = entry[field]
    entry[field] = (
        value + 1 if isinstance(value, int) else _mutate_char(value, tamper[2] % len(value))
    )
    with pytest.raises(KeyHistoryError):
        KeyHistory.from_json(json.dumps(doc))
