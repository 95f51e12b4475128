"""The local implementation of the OneClickDZ v3 API (`oneclickdz serve`, `oneclickdz admin`).

Needs the `server` extra (`pip install "oneclickdz[server]"`). This package imports nothing
itself, so that its light modules (`config`, `formats`) load without that extra; start from
`runtime` (serve, start_in_thread), `admin` (operator actions) or `testing` (a test harness).
"""
