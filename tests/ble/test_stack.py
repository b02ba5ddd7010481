"""The BLE test stack itself, with a bare bleak subscriber: discovery, every packet in order,
reconnects and a vanishing peripheral (the two BlueZoo fixes in bluezoo_patched.py)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from sensor.protocols import holdmon as hm
from sensor.protocols import witmotion as wm
from sensor.types import Samples

pytestmark = pytest.mark.ble

CENTRAL = "hci0"
SCAN_TIMEOUT_S = 5.0
PROFILES = {"holdmon": hm.PROFILE, "witmotion": wm.PROFILE}


async def find(name: str):
    from bleak import BleakScanner

    device = await BleakScanner.find_device_by_name(name, timeout=SCAN_TIMEOUT_S, bluez={"adapter": CENTRAL})
    if device is None:
        raise AssertionError(f"scan on {CENTRAL} did not find {name!r}")
    return device


async def subscribe_and_collect(name: str, profile_name: str, rate_hz: float, n_expected: int,
                                timeout_s: float) -> list[bytes]:
    """Connect, subscribe, start; collect data notifications until n_expected samples arrived."""
    from bleak import BleakClient

    profile = PROFILES[profile_name]
    decoder = profile.make_decoder()
    payloads: list[bytes] = []
    received = [0]
    done = asyncio.Event()

    def on_data(_char, data: bytearray) -> None:
        payload = bytes(data)
        packets = decoder.decode(payload)
        if packets:
            payloads.append(payload)
            received[0] += sum(len(p) for p in packets)
            if received[0] >= n_expected:
                done.set()

    async with BleakClient(await find(name), bluez={"adapter": CENTRAL}) as client:
        await client.start_notify(profile.notify_uuid, on_data)
        for uuid in profile.extra_notify_uuids:
            await client.start_notify(uuid, lambda _c, _d: None)
        for uuid, command in profile.start_commands(rate_hz):
            await client.write_gatt_char(uuid, command, response=True)
        await asyncio.wait_for(done.wait(), timeout_s)
    return payloads


def decoded(profile_name: str, payloads: list[bytes]) -> Samples:
    decoder = PROFILES[profile_name].make_decoder()
    packets = [p for payload in payloads for p in decoder.decode(payload)]
    acc = np.concatenate([p.acc_mps2 for p in packets])
    gyr = np.concatenate([p.gyr_radps for p in packets])
    seq = None if packets[0].sample_seq is None else np.concatenate([p.sample_seq for p in packets])
    return Samples(np.arange(len(acc), dtype=float), acc, gyr, seq)


@pytest.mark.parametrize("profile_name, rate_hz", [("holdmon", 200.0), ("witmotion", 100.0)])
def test_bare_subscriber_gets_every_packet_in_order(emulators, make_source, profile_name, rate_hz):
    source = make_source(rate_hz, seconds=3.0)
    n = len(source.samples)
    emulator = emulators.start("hci1", source.path, profile=profile_name, rate_hz=rate_hz)
    payloads = asyncio.run(subscribe_and_collect(emulator.name, profile_name, rate_hz, n, timeout_s=15.0))
    report = emulator.stop()

    got = decoded(profile_name, payloads)
    assert len(got) == n == report["samples_sent"]
    assert len(payloads) == report["notifications_sent"]
    if got.seq is not None:
        np.testing.assert_array_equal(got.seq, np.arange(n))
    lsb = (hm.acc_scale_mps2(hm.DEFAULT_ACC_CODE) if profile_name == "holdmon" else wm.ACC_LSB_MPS2)
    np.testing.assert_allclose(got.acc_mps2, source.samples.acc_mps2, atol=lsb / 2 + 1e-9)


def test_peripheral_killed_then_back_reconnects_cleanly(emulators, make_source):
    from bleak import BleakClient

    source = make_source(100.0, seconds=20.0)
    first = emulators.start("hci1", source.path, profile="witmotion", rate_hz=100.0)

    async def scenario() -> tuple[float, int, int]:
        lost = asyncio.Event()
        lost_at = [0.0]

        def on_disconnect(_client) -> None:
            lost_at[0] = time.monotonic()
            lost.set()

        client = BleakClient(await find(first.name), bluez={"adapter": CENTRAL},
                             disconnected_callback=on_disconnect)
        await client.connect()
        counts = [0]
        await client.start_notify(wm.NOTIFY_UUID, lambda _c, d: counts.__setitem__(0, counts[0] + 1))
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        first.kill()
        await asyncio.wait_for(lost.wait(), 2.0)
        before = counts[0]

        second = emulators.start("hci1", source.path, profile="witmotion", rate_hz=100.0, name=first.name)
        client = BleakClient(await find(second.name), bluez={"adapter": CENTRAL})
        async with client:
            uuids = [c.uuid for s in client.services for c in s.characteristics]
            await client.start_notify(wm.NOTIFY_UUID, lambda _c, d: counts.__setitem__(0, counts[0] + 1))
            await asyncio.sleep(0.5)
        assert sorted(uuids) == sorted([wm.NOTIFY_UUID, wm.WRITE_UUID])
        return lost_at[0] - killed_at, before, counts[0] - before

    notice_s, before, after = asyncio.run(scenario())
    assert notice_s < 1.0
    assert before > 0 and after > 0


def test_link_dropped_by_the_stack_is_reported_and_reconnects(ble_stack, emulators, make_source):
    from bleak import BleakClient

    from .conftest import drop_link_async

    source = make_source(100.0, seconds=20.0)
    emulator = emulators.start("hci1", source.path, profile="witmotion", rate_hz=100.0)

    async def scenario() -> tuple[int, int]:
        lost = asyncio.Event()
        counts = [0, 0]
        client = BleakClient(await find(emulator.name), bluez={"adapter": CENTRAL},
                             disconnected_callback=lambda _c: lost.set())
        await client.connect()
        await client.start_notify(wm.NOTIFY_UUID, lambda _c, _d: counts.__setitem__(0, counts[0] + 1))
        await asyncio.sleep(0.3)
        await drop_link_async(ble_stack.address, CENTRAL, emulator.address)
        await asyncio.wait_for(lost.wait(), 1.0)
        async with BleakClient(await find(emulator.name), bluez={"adapter": CENTRAL}) as again:
            await again.start_notify(wm.NOTIFY_UUID, lambda _c, _d: counts.__setitem__(1, counts[1] + 1))
            await asyncio.sleep(0.3)
        return counts[0], counts[1]

    before, after = asyncio.run(scenario())
    assert before > 0 and after > 0


def test_emulator_registers_again_after_bluez_restart(ble_stack, emulators, make_source):
    from .conftest import restart_bluezoo

    source = make_source(100.0, seconds=3.0)
    emulator = emulators.start("hci1", source.path, profile="holdmon", rate_hz=100.0)
    restart_bluezoo(ble_stack, kill=True)
    payloads = asyncio.run(subscribe_and_collect(emulator.name, "holdmon", 100.0, len(source.samples),
                                                 timeout_s=15.0))
    report = emulator.stop()
    assert report["registrations"] == 2
    got = decoded("holdmon", payloads)
    np.testing.assert_array_equal(got.seq, np.arange(len(source.samples)))
