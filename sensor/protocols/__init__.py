"""Sensor protocols: pure, table-driven decoders (bytes -> samples in SI units) and command encoders.

The registry: `PROFILES` by name, `match_profile()` to pick one for a scanned device, `get_profile()`
for a name given on the command line, and `same_uuid()` to compare UUIDs the way the profiles need
(16-bit UUIDs on the Bluetooth SIG base and on WitMotion's `...-00805f9a34fb` base are the same).
"""

from __future__ import annotations

import re

from sensor.errors import ConfigError
from sensor.protocols.base import Profile
from sensor.protocols import holdmon, polar, witmotion

PROFILES: dict[str, Profile] = {p.name: p for p in (holdmon.PROFILE, witmotion.PROFILE, polar.PROFILE)}

# Devices whose names start like a profile's but speak something else (WitMotion's WTVB01 vibration
# sensors also send `55 61`, with a 28-byte layout).
_EXCLUDED_NAME_PREFIXES: dict[str, tuple[str, ...]] = {"witmotion": ("WTVB",)}

_SHORT_UUID = re.compile(r"^(?:0x)?([0-9a-f]{4})$")
_BASE_UUID = re.compile(r"^0000([0-9a-f]{4})-0000-1000-8000-00805f9[ab]34fb$")


def uuid16(uuid: str) -> int | None:
    """The 16-bit part of `ffe4`, `0xffe4` or `0000ffe4-0000-1000-8000-00805f9{a,b}34fb`, else None."""
    text = uuid.strip().lower()
    m = _SHORT_UUID.match(text) or _BASE_UUID.match(text)
    return int(m.group(1), 16) if m else None


def same_uuid(a: str, b: str) -> bool:
    """UUID equality, case-insensitive; 16-bit UUIDs compare on their 16-bit part whatever the base."""
    short_a, short_b = uuid16(a), uuid16(b)
    if short_a is not None or short_b is not None:
        return short_a == short_b
    return a.strip().lower() == b.strip().lower()


def _excluded(profile: Profile, name: str | None) -> bool:
    return bool(name) and name.startswith(_EXCLUDED_NAME_PREFIXES.get(profile.name, ()))


def match_profile(name: str | None, service_uuids: list[str]) -> Profile | None:
    """The profile for a scanned device: by advertised service UUID first, then by name prefix.

    A name on a profile's exclusion list (e.g. "WTVB01" for witmotion) never matches that profile.
    """
    candidates = [p for p in PROFILES.values() if not _excluded(p, name)]
    for profile in candidates:
        if any(same_uuid(profile.service_uuid, u) for u in service_uuids):
            return profile
    for profile in candidates:
        if name and name.startswith(profile.name_prefixes):
            return profile
    return None


def get_profile(name: str) -> Profile:
    """The profile called `name`; ConfigError listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown sensor profile {name!r}; known: {', '.join(PROFILES)}") from None
