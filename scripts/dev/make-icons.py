#!/usr/bin/env python3
"""Draws Headroom's icons (RGBA PNGs; Tauri refuses RGB): a rounded tile with a gauge bar.

Run from the repository root: python3 scripts/dev/make-icons.py
"""
import struct
import zlib


def png(path, size, pixel):
    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y, size)) for x in range(size)) for y in range(size)
    )
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def tile(x, y, n, background=(32, 140, 96, 255), bars=(0.55, 0.40, 0.25)):
    r = n * 0.22  # corner radius
    cx = min(max(x + 0.5, r), n - r)
    cy = min(max(y + 0.5, r), n - r)
    if (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 > r * r:
        return (0, 0, 0, 0)
    u, v = (x + 0.5) / n, (y + 0.5) / n
    # Three bars of a level meter, the last one short: memory with headroom left.
    for i, height in enumerate(bars):
        left = 0.2 + i * 0.22
        if left <= u <= left + 0.16 and 0.8 - height <= v <= 0.8:
            return (255, 255, 255, 255)
    return background


for name, size in (("32x32.png", 32), ("128x128.png", 128), ("icon.png", 512)):
    png(f"icons/{name}", size, tile)

# The tray icon follows the pressure tier. Colour is not the only difference: the bars fill up
# as memory does (normal: headroom left; constrained: nearly level; critical: all full).
TIERS = {
    "normal": ((32, 140, 96, 255), (0.55, 0.40, 0.25)),
    "constrained": ((196, 128, 16, 255), (0.55, 0.55, 0.45)),
    "critical": ((200, 40, 40, 255), (0.62, 0.62, 0.62)),
}
for tier, (background, bars) in TIERS.items():
    png(f"icons/tray-{tier}.png", 32, lambda x, y, n: tile(x, y, n, background, bars))
