"""A system tray for the app test: it owns org.kde.StatusNotifierWatcher on the session bus, as
KDE's, GNOME's AppIndicator extension's or XFCE's tray does, takes the app's
StatusNotifierItem when it registers, and on each command read from stdin does what a tray
does with the item, replying with one JSON line:

  items             the registered items
  icon              the icon's size and the mean colour of its opaque pixels
  menu              the menu's top-level entries (dbusmenu GetLayout)
  click ID          chooses entry ID (dbusmenu Event "clicked")
  activate X Y      a left click on the icon at X, Y (Activate)

Prints "ready" once it owns the watcher's name.
"""

import json
import os
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

WATCHER = "org.kde.StatusNotifierWatcher"
ITEM = "org.kde.StatusNotifierItem"
MENU = "com.canonical.dbusmenu"

DBusGMainLoop(set_as_default=True)
bus = dbus.SessionBus()


class Watcher(dbus.service.Object):
    def __init__(self):
        self.items = []  # (bus name, object path)
        self.name = dbus.service.BusName(WATCHER, bus)
        super().__init__(self.name, "/StatusNotifierWatcher")

    @dbus.service.method(WATCHER, in_signature="s", sender_keyword="sender")
    def RegisterStatusNotifierItem(self, service, sender=None):
        # A bus name, or an object path on the caller's own connection.
        item = (sender, service) if service.startswith("/") else (service, "/StatusNotifierItem")
        if item not in self.items:
            self.items.append(item)
        self.StatusNotifierItemRegistered(f"{item[0]}{item[1]}")

    @dbus.service.method(WATCHER, in_signature="s")
    def RegisterStatusNotifierHost(self, service):
        pass

    @dbus.service.signal(WATCHER, signature="s")
    def StatusNotifierItemRegistered(self, service):
        pass

    @dbus.service.signal(WATCHER, signature="s")
    def StatusNotifierItemUnregistered(self, service):
        pass

    @dbus.service.signal(WATCHER, signature="")
    def StatusNotifierHostRegistered(self):
        pass

    @dbus.service.method(dbus.PROPERTIES_IFACE, in_signature="ss", out_signature="v")
    def Get(self, interface, name):
        return self.GetAll(interface)[name]

    @dbus.service.method(dbus.PROPERTIES_IFACE, in_signature="s", out_signature="a{sv}")
    def GetAll(self, interface):
        return {
            "RegisteredStatusNotifierItems": dbus.Array(
                [f"{n}{p}" for n, p in self.items], signature="s"
            ),
            # This is a tray that shows items: without it, items may decline to register.
            "IsStatusNotifierHostRegistered": dbus.Boolean(True),
            "ProtocolVersion": dbus.Int32(0),
        }


watcher = Watcher()


def item():
    if not watcher.items:
        raise RuntimeError("no item registered")
    name, path = watcher.items[-1]
    return name, bus.get_object(name, path)


def menu_object():
    name, obj = item()
    path = obj.Get(ITEM, "Menu", dbus_interface=dbus.PROPERTIES_IFACE)
    return bus.get_object(name, path)


def command(line):
    words = line.split()
    if not words:
        return {"error": "empty command"}
    if words[0] == "items":
        return {"items": [f"{n}{p}" for n, p in watcher.items]}
    if words[0] == "icon":
        _, obj = item()
        pixmaps = obj.Get(ITEM, "IconPixmap", dbus_interface=dbus.PROPERTIES_IFACE)
        width, height, data = pixmaps[0]
        data = bytes(data)
        # ARGB32, network byte order.
        opaque = [data[i : i + 4] for i in range(0, len(data), 4) if data[i] > 128]
        mean = [round(sum(p[c] for p in opaque) / max(len(opaque), 1)) for c in (1, 2, 3)]
        return {"width": int(width), "height": int(height), "mean": mean}
    if words[0] == "menu":
        _, layout = menu_object().GetLayout(0, 1, dbus.Array([], signature="s"), dbus_interface=MENU)[:2]
        entries = []
        for child in layout[2]:
            entry_id, props = int(child[0]), child[1]
            entries.append(
                {
                    "id": entry_id,
                    "type": str(props.get("type", "standard")),
                    "label": str(props.get("label", "")),
                    "enabled": bool(props.get("enabled", True)),
                    "toggle_state": int(props["toggle-state"]) if "toggle-state" in props else None,
                }
            )
        return {"menu": entries}
    if words[0] == "click" and len(words) == 2:
        menu_object().Event(
            dbus.Int32(int(words[1])),
            "clicked",
            dbus.Int32(0, variant_level=1),
            dbus.UInt32(0),
            dbus_interface=MENU,
        )
        return {"ok": True}
    if words[0] == "activate" and len(words) == 3:
        _, obj = item()
        obj.Activate(dbus.Int32(int(words[1])), dbus.Int32(int(words[2])), dbus_interface=ITEM)
        return {"ok": True}
    return {"error": f"unknown command {line!r}"}


pending = b""


def on_stdin(source, condition):
    # Unbuffered: a buffered reader would take several lines at once and leave the ones after
    # the first where the main loop does not see them.
    global pending
    chunk = os.read(sys.stdin.fileno(), 4096)
    if not chunk:
        loop.quit()
        return False
    pending += chunk
    while b"\n" in pending:
        line, pending = pending.split(b"\n", 1)
        try:
            reply = command(line.decode())
        except Exception as e:  # the test reads the error and fails with it
            reply = {"error": str(e)}
        print(json.dumps(reply), flush=True)
    return True


loop = GLib.MainLoop()
GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, on_stdin)
print("ready", flush=True)
loop.run()
