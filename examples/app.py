#!/usr/bin/env python3
"""litefleet example application: a tiny HTTP service over one SQLite database.

This is the example app for litefleet's HTTP proxy. Run it under `exec:` on every node,
behind `proxy:`. The database lives on the litefleet FUSE mount. On the primary it is
writable; on a replica it is read-only and kept current by replication. The proxy sends
reads (GET) to the local node and forwards writes (POST) from a replica to the primary.
So POSTs write, GETs read, and the app never has to know which node it is on.

Usage:
    python3 examples/app.py --db /litefs/app.db --addr 127.0.0.1:8080

On startup it creates the schema if it is missing and the database can be written:
    PRAGMA journal_mode=WAL;
    CREATE TABLE IF NOT EXISTS rows(id TEXT PRIMARY KEY, value TEXT NOT NULL,
                                    node TEXT NOT NULL, at REAL NOT NULL);
On a read-only replica that fails. The error is ignored because the table arrives by
replication. Until it does, any request that needs the table answers
503 "schema not replicated yet".
When it is listening it prints one line to stdout: `app: listening on HOST:PORT db PATH`.
It exits cleanly (status 0) on SIGTERM or SIGINT.

Endpoints (HTTP/1.1, keep-alive; every response that is not streamed has Content-Length;
every response names the node that answered in `X-App-Node`):
    POST /rows            body {"id": "...", "value": "..."}; inserts the row, stamped with
                          this node's name and the time. 201 {"id", "node"};
                          409 {"error": "duplicate id"}; 400 bad JSON or missing fields;
                          503 {"error"} when the database is read-only (a replica that got a
                          write the proxy did not forward); 500 {"error"} on other SQLite errors.
    GET  /rows/<id>       200 {"id", "value", "node"} or 404.
    GET  /rows            200 {"count": N, "ids": [...sorted...]}.
    POST /upload          streams the body (Content-Length or chunked) in 64 KiB pieces and
                          answers 200 {"bytes": N, "sha256": "<hex>"}.
    GET  /download?bytes=N  streams N bytes, byte i = i % 251, chunked in 64 KiB pieces.
    GET  /sse?n=N&interval_ms=M  text/event-stream: N events "data: <i>\\n\\n", M ms apart
                          (defaults 5 and 100), then ends the response.
    GET  /ws              WebSocket (RFC 6455) echo: text and binary frames come back with
                          the same opcode, ping gets pong, close gets close.
    GET  /headers         200 {"<lower-case name>": ["value", ...]}: the request's headers as
                          the app received them (shows the proxy's X-Forwarded-*).
    GET  /health          200 "ok".
    anything else         404.

Environment:
    APP_DB     database path when --db is not given.
    APP_ADDR   listen address when --addr is not given (default 127.0.0.1:8080).
    APP_NODE   node name recorded with each row (default: the hostname).
    APP_DEBUG  when set, log requests and startup details to stderr.

Python 3.11 standard library only. Works with SQLite 3.40.
"""

import argparse
import base64
import hashlib
import json
import os
import signal
import socket
import socketserver
import sqlite3
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

CHUNK = 64 * 1024  # read/write granularity for bodies and streams
MAX_JSON_BODY = 1024 * 1024  # POST /rows bodies larger than this get 413
MAX_WS_PAYLOAD = 16 * 1024 * 1024  # larger WebSocket frames are refused (close 1009)
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rows("
    "id TEXT PRIMARY KEY, value TEXT NOT NULL, node TEXT NOT NULL, at REAL NOT NULL)"
)

# SQLite primary result codes that mean "this node cannot write": a read-only replica
# (SQLITE_READONLY), or a FUSE mount refusing the write with EROFS/EPERM, which SQLite
# reports as SQLITE_PERM, SQLITE_IOERR or SQLITE_CANTOPEN.
SQLITE_PERM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN = 3, 8, 10, 14
READONLY_CODES = {SQLITE_PERM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN}
READONLY_WORDS = (
    "readonly",
    "read-only",
    "read only",
    "disk i/o error",
    "unable to open database file",
    "permission denied",
    "not permitted",
)

DEBUG = bool(os.environ.get("APP_DEBUG"))
NODE = os.environ.get("APP_NODE") or socket.gethostname()
DB_PATH = None  # set in main()

# 251 is prime, so byte i = i % 251 does not line up with 64 KiB chunks. Slicing this
# buffer at offset % 251 gives any chunk without a per-byte loop.
PATTERN = bytes(range(251)) * (CHUNK // 251 + 2)


def debug(msg):
    if DEBUG:
        print(msg, file=sys.stderr, flush=True)


def open_db():
    """A new connection for each request, so each handler thread has its own."""
    return sqlite3.connect(DB_PATH, timeout=10, isolation_level=None, check_same_thread=False)


def is_readonly_error(e):
    """True when a SQLite error means this database cannot be written (e.g. a replica)."""
    if not isinstance(e, sqlite3.OperationalError):
        return False
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int) and (code & 0xFF) in READONLY_CODES:
        return True
    msg = str(e).lower()
    return any(w in msg for w in READONLY_WORDS)


def is_missing_schema(e):
    return isinstance(e, sqlite3.OperationalError) and "no such table" in str(e).lower()


def init_schema():
    """Create the schema if it is missing. On a read-only replica this fails, which is fine:
    the table arrives by replication."""
    try:
        conn = open_db()
    except sqlite3.Error as e:
        print(f"app: cannot open {DB_PATH} yet ({e}); carrying on", file=sys.stderr, flush=True)
        return
    try:
        try:
            row = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='rows'"
            ).fetchone()
            if row:
                debug("app: schema present")
                return
        except sqlite3.Error as e:
            debug(f"app: cannot read schema ({e}); trying to create it anyway")
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            debug(f"app: journal_mode={mode[0] if mode else '?'}")
        except (sqlite3.Error, OSError) as e:
            debug(f"app: journal_mode=WAL failed ({e})")
        try:
            conn.execute(SCHEMA)
            debug("app: schema created")
        except (sqlite3.Error, OSError) as e:
            # SQLITE_READONLY, "attempt to write a readonly database", EROFS/EPERM, ...
            print(
                f"app: schema not created ({e}); read-only replica? carrying on",
                file=sys.stderr,
                flush=True,
            )
    finally:
        conn.close()


class BadRequest(Exception):
    """Request framing is broken (bad Content-Length, bad chunk). Answer 400 and close."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked responses
    # TCP_NODELAY: a response goes out in two writes (head, body); with Nagle's algorithm the
    # body waits for the client's delayed ACK of the head, about 40 ms per request.
    disable_nagle_algorithm = True
    server_version = "litefleet-example-app/1"

    def end_headers(self):
        # Which node's app answered (the proxy forwards writes from replicas).
        self.send_header("X-App-Node", NODE)
        super().end_headers()

    def log_message(self, format, *args):
        if DEBUG:
            sys.stderr.write("app: %s %s\n" % (self.address_string(), format % args))

    # ----- request bodies -----

    def iter_body(self):
        """Yield the request body in pieces of at most CHUNK bytes. Supports Content-Length
        and Transfer-Encoding: chunked (BaseHTTPRequestHandler does neither for us)."""
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise BadRequest(f"unsupported Transfer-Encoding: {te}")
            yield from self._iter_chunked()
            return
        cl = self.headers.get("Content-Length")
        if cl is None:
            return
        cl = cl.strip()
        if not cl.isdigit():
            raise BadRequest(f"bad Content-Length: {cl!r}")
        left = int(cl)
        while left > 0:
            data = self.rfile.read(min(CHUNK, left))
            if not data:
                raise BadRequest("body ended early")
            left -= len(data)
            yield data

    def _iter_chunked(self):
        while True:
            line = self.rfile.readline(CHUNK + 1)
            if not line.endswith(b"\n"):
                raise BadRequest("bad chunk size line")
            size_text = line.split(b";", 1)[0].strip()  # drop chunk extensions
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest(f"bad chunk size {size_text!r}") from None
            if size < 0:
                raise BadRequest("bad chunk size")
            if size == 0:
                # Trailer fields (ignored) until the empty line.
                while True:
                    line = self.rfile.readline(CHUNK + 1)
                    if not line:
                        raise BadRequest("body ended early")
                    if line in (b"\r\n", b"\n"):
                        return
            while size > 0:
                data = self.rfile.read(min(CHUNK, size))
                if not data:
                    raise BadRequest("body ended early")
                size -= len(data)
                yield data
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest("chunk not followed by CRLF")

    def drain_body(self):
        for _ in self.iter_body():
            pass

    # ----- responses -----

    def send_body(self, code, body, ctype, headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, code, obj):
        self.send_body(code, json.dumps(obj).encode(), "application/json")

    def send_text(self, code, text):
        self.send_body(code, text.encode(), "text/plain; charset=utf-8")

    def send_db_error(self, e):
        if is_missing_schema(e):
            self.send_text(503, "schema not replicated yet")
        elif is_readonly_error(e):
            self.send_json(503, {"error": str(e)})
        else:
            self.send_json(500, {"error": str(e)})

    def start_chunked(self, code, ctype, headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def write_chunk(self, data):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ----- dispatch -----

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_OPTIONS(self):
        self.dispatch()

    def dispatch(self):
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        method = self.command
        try:
            # These two read the body themselves; everything else drains it first, so the
            # next request on a keep-alive connection starts in the right place.
            if method == "POST" and path == "/rows":
                return self.post_row()
            if method == "POST" and path == "/upload":
                return self.upload()
            self.drain_body()
            if method in ("GET", "HEAD"):
                if path == "/health":
                    return self.send_text(200, "ok")
                if path == "/headers":
                    seen = {}
                    for k, v in self.headers.items():
                        seen.setdefault(k.lower(), []).append(v)
                    return self.send_json(200, seen)
                if path == "/rows":
                    return self.list_rows()
                if path.startswith("/rows/") and len(path) > len("/rows/"):
                    return self.get_row(unquote(path[len("/rows/"):]))
            if method == "GET":
                if path == "/download":
                    return self.download(query)
                if path == "/sse":
                    return self.sse(query)
                if path == "/ws":
                    return self.websocket()
            self.send_text(404, "not found")
        except BadRequest as e:
            # The body framing is broken, so we cannot find the next request: close.
            self.close_connection = True
            try:
                self.send_body(400, str(e).encode(), "text/plain; charset=utf-8",
                               [("Connection", "close")])
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client went away mid-stream

    # ----- /rows -----

    def post_row(self):
        body = bytearray()
        too_big = False
        for data in self.iter_body():  # read it all, even if too big, to stay in sync
            if len(body) + len(data) > MAX_JSON_BODY:
                too_big = True
            if not too_big:
                body += data
        if too_big:
            return self.send_json(413, {"error": "body too large"})
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return self.send_json(400, {"error": f"bad JSON: {e}"})
        if not isinstance(doc, dict):
            return self.send_json(400, {"error": "body must be a JSON object"})
        row_id, value = doc.get("id"), doc.get("value")
        if not isinstance(row_id, str) or not row_id:
            return self.send_json(400, {"error": "missing or bad field: id (non-empty string)"})
        if not isinstance(value, str):
            return self.send_json(400, {"error": "missing or bad field: value (string)"})
        try:
            conn = open_db()
        except sqlite3.Error as e:
            return self.send_db_error(e)
        try:
            conn.execute(
                "INSERT INTO rows(id, value, node, at) VALUES (?,?,?,?)",
                (row_id, value, NODE, time.time()),
            )
        except sqlite3.IntegrityError:
            return self.send_json(409, {"error": "duplicate id"})
        except sqlite3.Error as e:
            return self.send_db_error(e)  # read-only replica -> 503, other errors -> 500
        finally:
            conn.close()
        self.send_json(201, {"id": row_id, "node": NODE})

    def get_row(self, row_id):
        try:
            conn = open_db()
        except sqlite3.Error as e:
            return self.send_db_error(e)
        try:
            row = conn.execute(
                "SELECT id, value, node FROM rows WHERE id = ?", (row_id,)
            ).fetchone()
        except sqlite3.Error as e:
            return self.send_db_error(e)
        finally:
            conn.close()
        if row is None:
            return self.send_json(404, {"error": "not found"})
        self.send_json(200, {"id": row[0], "value": row[1], "node": row[2]})

    def list_rows(self):
        try:
            conn = open_db()
        except sqlite3.Error as e:
            return self.send_db_error(e)
        try:
            ids = [r[0] for r in conn.execute("SELECT id FROM rows ORDER BY id")]
        except sqlite3.Error as e:
            return self.send_db_error(e)
        finally:
            conn.close()
        self.send_json(200, {"count": len(ids), "ids": ids})

    # ----- streaming -----

    def upload(self):
        h = hashlib.sha256()
        n = 0
        for data in self.iter_body():  # never holds more than one 64 KiB piece
            h.update(data)
            n += len(data)
        self.send_json(200, {"bytes": n, "sha256": h.hexdigest()})

    @staticmethod
    def int_param(query, name, default):
        vals = query.get(name)
        if not vals:
            return default
        v = vals[0].strip()
        if not v.isdigit():
            raise ValueError(f"{name} must be a non-negative integer")
        return int(v)

    def download(self, query):
        try:
            total = self.int_param(query, "bytes", 0)
        except ValueError as e:
            return self.send_text(400, str(e))
        self.start_chunked(200, "application/octet-stream")
        offset = 0
        while offset < total:
            n = min(CHUNK, total - offset)
            start = offset % 251
            self.write_chunk(PATTERN[start:start + n])
            offset += n
        self.end_chunked()

    def sse(self, query):
        try:
            n = self.int_param(query, "n", 5)
            interval = self.int_param(query, "interval_ms", 100)
        except ValueError as e:
            return self.send_text(400, str(e))
        self.start_chunked(200, "text/event-stream", [("Cache-Control", "no-cache")])
        for i in range(n):
            if i:
                time.sleep(interval / 1000.0)
            self.write_chunk(b"data: %d\n\n" % i)
        self.end_chunked()

    # ----- /ws: WebSocket echo (RFC 6455) -----

    def websocket(self):
        upgrade = self.headers.get("Upgrade", "")
        key = self.headers.get("Sec-WebSocket-Key")
        if "websocket" not in upgrade.lower() or not key:
            return self.send_text(400, "expected a WebSocket upgrade (Upgrade: websocket, "
                                       "Sec-WebSocket-Key)")
        version = self.headers.get("Sec-WebSocket-Version")
        if version is not None and version.strip() != "13":
            return self.send_body(426, b"unsupported WebSocket version",
                                  "text/plain; charset=utf-8",
                                  [("Sec-WebSocket-Version", "13")])
        accept = base64.b64encode(hashlib.sha1((key.strip() + WS_GUID).encode()).digest())
        # After the upgrade the connection is no longer HTTP: never read another request.
        self.close_connection = True
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        try:
            self.ws_loop()
        except (ConnectionError, OSError):
            pass  # the peer went away; the server closes the socket

    def ws_read_exact(self, n):
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            raise ConnectionError("websocket peer closed mid-frame")
        return data

    def ws_send(self, opcode, payload, fin=True):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", b0, n)
        elif n < 65536:
            header = struct.pack("!BBH", b0, 126, n)
        else:
            header = struct.pack("!BBQ", b0, 127, n)
        self.wfile.write(header + payload)  # server frames are never masked
        self.wfile.flush()

    def ws_close(self, code):
        self.ws_send(0x8, struct.pack("!H", code))

    def ws_loop(self):
        while True:
            b0, b1 = self.ws_read_exact(2)
            fin = bool(b0 & 0x80)
            rsv = b0 & 0x70
            opcode = b0 & 0x0F
            masked = bool(b1 & 0x80)
            length = b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self.ws_read_exact(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self.ws_read_exact(8))
            if rsv or not masked:  # no extensions negotiated; clients must mask
                return self.ws_close(1002)
            if length > MAX_WS_PAYLOAD:
                return self.ws_close(1009)
            mask = self.ws_read_exact(4)
            payload = unmask(self.ws_read_exact(length), mask)
            if opcode in (0x0, 0x1, 0x2):
                # Continuation, text, binary: echo with the same opcode and FIN, so a
                # fragmented message comes back fragmented the same way.
                self.ws_send(opcode, payload, fin)
            elif opcode == 0x8:  # close: answer with the same status code, then stop
                self.ws_send(0x8, payload[:2])
                return
            elif opcode == 0x9:  # ping -> pong with the same payload
                if not fin or length > 125:
                    return self.ws_close(1002)
                self.ws_send(0xA, payload)
            elif opcode == 0xA:  # unsolicited pong: ignore
                pass
            else:
                return self.ws_close(1002)


def unmask(data, mask):
    """XOR data with the 4-byte mask, using big integers instead of a per-byte loop."""
    n = len(data)
    if n == 0:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(), which can stall on DNS; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port


def parse_addr(addr):
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bad address {addr!r}, want HOST:PORT")
    host = host.strip("[]")  # [::1]:8080
    return host or "0.0.0.0", int(port)


def main():
    global DB_PATH
    p = argparse.ArgumentParser(description="litefleet example app (see the top of this file)")
    p.add_argument("--db", default=os.environ.get("APP_DB"),
                   help="SQLite database path (env APP_DB)")
    p.add_argument("--addr", default=os.environ.get("APP_ADDR") or "127.0.0.1:8080",
                   help="listen HOST:PORT (env APP_ADDR, default 127.0.0.1:8080)")
    args = p.parse_args()
    if not args.db:
        p.error("--db or APP_DB is required")
    try:
        host, port = parse_addr(args.addr)
    except ValueError as e:
        p.error(str(e))
    DB_PATH = args.db

    init_schema()

    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = Server((host, port), Handler)

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, and serve_forever() runs in this
        # (main) thread, so ask for it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"app: listening on {shown}:{bound_port} db {DB_PATH}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    debug("app: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
