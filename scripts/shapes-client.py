#!/usr/bin/env python3
"""Sends COUNT requests to 127.0.0.1:PORT on 8 kept-alive HTTP/1.1 connections, cycling the
request shapes of SHAPES (written by `scripts/scenario.py ... --shapes`); exits non-zero on any
response that is not a 200. Used by scripts/bench-profile and scripts/order-text.

    scripts/shapes-client.py PORT COUNT SHAPES
"""

import asyncio
import json
import sys


async def conn(port, shapes, n, start):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    for i in range(n):
        host, path, header = shapes[(start + i) % len(shapes)]
        extra = f"{header[0]}: {header[1]}\r\n" if header else ""
        w.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: profile\r\n{extra}\r\n".encode())
        head = await r.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
        await r.readexactly(length)
        if status != b"200":
            sys.exit(f"status {status.decode()} for {host}{path}")
    w.close()


async def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    port, count, shapes = int(sys.argv[1]), int(sys.argv[2]), json.load(open(sys.argv[3]))
    await asyncio.gather(*(conn(port, shapes, count // 8, k * 17) for k in range(8)))


asyncio.run(main())
