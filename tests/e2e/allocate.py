# Another app allocating fast: takes TOTAL MiB at RATE MiB/s in steps every 50 ms, touching
# every page (no swap here, so the pages are really charged), says so, then holds it HOLD s.
# Used by tests/e2e/bursts.rs and the benchmark's bursts phase.
import ctypes, sys, time

rate, total, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
step = max(1, rate * 50 // 1000)
blocks, got, start = [], 0, time.monotonic()
while got < total:
    n = min(step, total - got)
    block = bytearray(n << 20)
    ctypes.memset((ctypes.c_char * len(block)).from_buffer(block), 1, len(block))
    blocks.append(block)
    got += n
    late = start + got / rate - time.monotonic()
    if late > 0:
        time.sleep(late)
print(f"held {got} MiB after {time.monotonic() - start:.3f} s", flush=True)
time.sleep(hold)
