"""Test-only launcher for BlueZoo (the user-space org.bluez mock) with two fixes the tests need.

Run as a script with BlueZoo's own options, e.g.
`python tests/ble/bluezoo_patched.py --auto-enable --scan-interval 1 -a 00:00:00:00:00:01`.

BlueZoo is GPL-2.0 and is used only here, in a separate process; the holdmon package never imports it.
The fixes, applied by monkeypatching BlueZoo 1.0.2 at start-up:

1. Reconnect: BlueZoo never removes the GATT objects it exports for a connection, so a second
   `Connect` fails with EEXIST and a restarted peripheral shows every characteristic twice. Here a
   disconnect removes the device's GATT objects, stops its notification subscriptions (as BlueZ does
   when the last subscriber leaves) and clears `ServicesResolved`.
2. Vanishing peripheral: when the D-Bus name that registered a GATT application disappears (the
   peripheral process died), every central connected to that adapter is disconnected, so the central
   sees `Connected=false` as it would after a supervision timeout on a real link.
"""

from __future__ import annotations

import asyncio
import logging

from bluezoo import bluezoo as bluezoo_main
from bluezoo import events
from bluezoo.device import Device
from bluezoo.gatt import GattCharacteristicClientLink

log = logging.getLogger("bluezoo_patched")

STOP_NOTIFY_TIMEOUT_S = 1.0

_original_disconnect = Device.disconnect
_original_service_init = bluezoo_main.BluezMockService.__init__


async def _drop_gatt_links(device: Device) -> None:
    """Remove the GATT objects exported for `device`'s connection and end its subscriptions."""
    for link in list(device.services.values()):
        if isinstance(link, GattCharacteristicClientLink):
            link.client_props_changed_subscription.unsubscribe()
            link.client_props_changed_subscription = events.Subscription()
            if link.client.Notifying.get(False):
                try:
                    await asyncio.wait_for(link.client.StopNotify(), STOP_NOTIFY_TIMEOUT_S)
                except Exception as exc:  # the peripheral may be gone; the link goes anyway
                    log.debug("StopNotify on %s failed: %s", link, exc)
    for link in reversed(list(device.services.values())):
        device.peer_adapter.mock.remove_object(link)
    device.services.clear()
    for side in (device, device.peer):
        if side is not None and side.services_resolved:
            await side.ServicesResolved.set_async(False)


async def _disconnect(self: Device, uuid: str | None = None) -> None:
    was_connected = self.connected
    await _original_disconnect(self, uuid)
    if was_connected or self.services:
        await _drop_gatt_links(self)


async def _disconnect_centrals_of(service, lost_owner: str) -> None:
    """Disconnect every central linked to an adapter whose GATT application `lost_owner` served."""
    adapters = [a for a in service.adapters.values()
                if any(client == lost_owner for client, _ in a.gatt_apps)]
    for peripheral_adapter in adapters:
        for central_adapter in list(service.adapters.values()):
            for device in list(central_adapter.devices.values()):
                if device.peer_adapter is peripheral_adapter and device.connected:
                    log.info("peripheral %s vanished: disconnecting %s", lost_owner, device)
                    await device.disconnect()


async def _watch_lost_peripherals(service) -> None:
    async for _, old, new in service.dbus.name_owner_changed.catch():
        if old and not new:
            await _disconnect_centrals_of(service, old)


def _service_init(self, *args, **kwargs) -> None:
    _original_service_init(self, *args, **kwargs)
    self.lost_peripheral_task = asyncio.create_task(_watch_lost_peripherals(self))


def apply_patches() -> None:
    """Install both fixes into the imported BlueZoo modules."""
    Device.disconnect = _disconnect
    bluezoo_main.BluezMockService.__init__ = _service_init


if __name__ == "__main__":
    apply_patches()
    bluezoo_main.main()
