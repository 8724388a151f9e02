"""Sends WM_DELETE_WINDOW to the X windows whose ids are on the command line: what a window
manager's close button does (xdotool 3.2016 has no `windowclose`). Used by the app test and the
benchmark's idle phase."""

import sys

from Xlib import X, display, protocol

d = display.Display()
protocols, delete = d.intern_atom("WM_PROTOCOLS"), d.intern_atom("WM_DELETE_WINDOW")
for wid in sys.argv[1:]:
    w = d.create_resource_object("window", int(wid))
    w.send_event(
        protocol.event.ClientMessage(
            window=w, client_type=protocols, data=(32, [delete, X.CurrentTime, 0, 0, 0])
        )
    )
d.sync()
