"""Profile registry: names, UUID matching (incl. WitMotion's non-standard base), lookup by name."""

from __future__ import annotations

import pytest

from sensor.errors import ConfigError
from sensor.protocols import PROFILES, get_profile, match_profile, same_uuid, uuid16

WIT_SERVICE_9A = "0000ffe5-0000-1000-8000-00805f9a34fb"
WIT_SERVICE_9B = "0000FFE5-0000-1000-8000-00805F9B34FB"


def test_registry_holds_the_profiles_by_name() -> None:
    assert {"witmotion", "polar"} <= set(PROFILES)
    for name, profile in PROFILES.items():
        assert profile.name == name
        assert profile.service_uuid == profile.service_uuid.lower()
        assert profile.notify_uuid == profile.notify_uuid.lower()
        assert profile.rates_hz == tuple(sorted(profile.rates_hz))
        assert callable(profile.make_decoder) and callable(profile.start_commands)


def test_profile_uuids_match_the_reference() -> None:
    wit = PROFILES["witmotion"]
    assert (wit.service_uuid, wit.notify_uuid, wit.write_uuid) == (
        "0000ffe5-0000-1000-8000-00805f9a34fb",
        "0000ffe4-0000-1000-8000-00805f9a34fb",
        "0000ffe9-0000-1000-8000-00805f9a34fb",
    )
    pol = PROFILES["polar"]
    assert (pol.service_uuid, pol.write_uuid, pol.notify_uuid) == (
        "fb005c80-02e7-f387-1cad-8acd2d8df0c8",
        "fb005c81-02e7-f387-1cad-8acd2d8df0c8",
        "fb005c82-02e7-f387-1cad-8acd2d8df0c8",
    )
    assert pol.extra_notify_uuids == ("fb005c81-02e7-f387-1cad-8acd2d8df0c8",)


@pytest.mark.parametrize(
    ("uuid", "expected"),
    [
        ("ffe4", 0xFFE4),
        ("0xFFE4", 0xFFE4),
        ("0000ffe4-0000-1000-8000-00805f9a34fb", 0xFFE4),
        ("0000FFE4-0000-1000-8000-00805F9B34FB", 0xFFE4),
        (" 0000180d-0000-1000-8000-00805f9b34fb ", 0x180D),
        ("fb005c80-02e7-f387-1cad-8acd2d8df0c8", None),
        ("0000ffe4-0000-1000-8000-00805f9c34fb", None),
        ("1234ffe4-0000-1000-8000-00805f9b34fb", None),
        ("", None),
    ],
)
def test_uuid16(uuid: str, expected: int | None) -> None:
    assert uuid16(uuid) == expected


def test_same_uuid() -> None:
    assert same_uuid(WIT_SERVICE_9A, WIT_SERVICE_9B)
    assert same_uuid("FFE5", WIT_SERVICE_9A)
    assert not same_uuid("ffe4", WIT_SERVICE_9A)
    assert same_uuid("FB005C80-02E7-F387-1CAD-8ACD2D8DF0C8", "fb005c80-02e7-f387-1cad-8acd2d8df0c8")
    assert not same_uuid("fb005c80-02e7-f387-1cad-8acd2d8df0c8", "fb005c81-02e7-f387-1cad-8acd2d8df0c8")


@pytest.mark.parametrize("service", [WIT_SERVICE_9A, WIT_SERVICE_9B, "ffe5", "0xFFE5"])
def test_witmotion_by_service_on_either_base(service: str) -> None:
    assert match_profile(None, [service]).name == "witmotion"
    assert match_profile("", ["0000180f-0000-1000-8000-00805f9b34fb", service]).name == "witmotion"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("WT901BLE68", "witmotion"),
        ("WT9011DCL-BT50", "witmotion"),
        ("Polar Sense B5A4C32F", "polar"),
        ("Polar H10 1DA39C31", None),
        ("wt901", None),
        ("Some Speaker", None),
        ("", None),
        (None, None),
    ],
)
def test_match_by_name(name: str | None, expected: str | None) -> None:
    profile = match_profile(name, [])
    assert (profile.name if profile else None) == expected


def test_polar_by_service_uuid_in_upper_case() -> None:
    assert match_profile("anything", ["FB005C80-02E7-F387-1CAD-8ACD2D8DF0C8"]).name == "polar"


def test_service_uuid_wins_over_name() -> None:
    assert match_profile("WT-but-polar", ["fb005c80-02e7-f387-1cad-8acd2d8df0c8"]).name == "polar"


def test_witmotion_vibration_sensor_is_not_an_imu() -> None:
    assert match_profile("WTVB01-BT50", []) is None
    assert match_profile("WTVB01-BT50", [WIT_SERVICE_9A]) is None


def test_unrelated_sig_uuids_do_not_match() -> None:
    assert match_profile(None, ["0000180d-0000-1000-8000-00805f9b34fb", "0000ffe4-0000-1000-8000-00805f9a34fb"]) is None


def test_get_profile() -> None:
    assert get_profile("witmotion") is PROFILES["witmotion"]
    with pytest.raises(ConfigError, match="unknown sensor profile 'nope'"):
        get_profile("nope")


def test_holdmon_profile_is_registered() -> None:
    from sensor.protocols import holdmon

    assert PROFILES["holdmon"] is holdmon.PROFILE
    assert match_profile(None, [holdmon.PROFILE.service_uuid.upper()]) is holdmon.PROFILE
    assert match_profile(holdmon.NAME_PREFIX + "left", []) is holdmon.PROFILE
