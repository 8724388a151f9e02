#!/usr/bin/python3
"""A stand-in notification service for the tests: owns org.freedesktop.Notifications on the
session bus and appends each notification it receives to a file, one JSON object per line.

Usage: notification_recorder.py OUTPUT_FILE   (prints "ready" once it owns the name)
"""
import json
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"


class Recorder(dbus.service.Object):
    def __init__(self, bus, output):
        super().__init__(bus, PATH)
        self.output = output
        self.next_id = 0

    @dbus.service.method(NAME, in_signature="susssasa{sv}i", out_signature="u")
    def Notify(self, app_name, replaces_id, app_icon, summary, body, actions, hints, timeout):
        self.next_id += 1
        with open(self.output, "a", encoding="utf-8") as f:
            f.write(json.dumps({"app_name": str(app_name), "summary": str(summary), "body": str(body)}) + "\n")
        return dbus.UInt32(self.next_id)

    @dbus.service.method(NAME, in_signature="", out_signature="as")
    def GetCapabilities(self):
        return ["body"]

    @dbus.service.method(NAME, in_signature="", out_signature="ssss")
    def GetServerInformation(self):
        return ("headroom-test-recorder", "headroom", "1.0", "1.2")

    @dbus.service.method(NAME, in_signature="u", out_signature="")
    def CloseNotification(self, notification_id):
        pass


def main():
    DBusGMainLoop(set_as_default=True)
    bus = dbus.SessionBus()
    name = dbus.service.BusName(NAME, bus, do_not_queue=True)
    recorder = Recorder(bus, sys.argv[1])
    print("ready", flush=True)
    GLib.MainLoop().run()
    del name, recorder


if __name__ == "__main__":
    main()
