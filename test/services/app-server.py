# A test app for the ingress tests, run inside a sandbox: echoes requests as JSON (method, path,
# headers, body size and sha256), streams /big/<n> bytes, /sse events, and a WebSocket echo at /ws.
import base64, hashlib, json, os, socket, struct, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATTERN = bytes(range(256)) * 4096  # 1 MiB


def read_body(h):
    digest, total = hashlib.sha256(), 0
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        while True:
            size = int(h.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                h.rfile.readline()
                break
            left = size
            while left:
                b = h.rfile.read(min(left, 1 << 20))
                digest.update(b)
                total += len(b)
                left -= len(b)
            h.rfile.readline()
    else:
        left = int(h.headers.get("Content-Length") or "0")
        while left:
            b = h.rfile.read(min(left, 1 << 20))
            if not b:
                break
            digest.update(b)
            total += len(b)
            left -= len(b)
    return total, digest.hexdigest()


def ws_echo(h):
    key = h.headers["Sec-WebSocket-Key"]
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    h.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    h.wfile.flush()
    r = h.rfile
    while True:
        head = r.read(2)
        if len(head) < 2:
            return
        op, n = head[0] & 0x0F, head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", r.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", r.read(8))[0]
        mask = r.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(r.read(n)))
        if op == 8:
            h.wfile.write(b"\x88\x00")
            return
        out = bytes([0x80 | op])
        if len(data) < 126:
            out += bytes([len(data)])
        elif len(data) < 65536:
            out += bytes([126]) + struct.pack(">H", len(data))
        else:
            out += bytes([127]) + struct.pack(">Q", len(data))
        h.wfile.write(out + data)
        h.wfile.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out as two writes: with Nagle on, the second waits for the client's
    # delayed ACK (40 ms) on every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def handle_any(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return ws_echo(self)
        if self.path.startswith("/sse"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                chunk = ("data: %d %f\n\n" % (i, time.time())).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.3)
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/big/"):
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n:
                b = PATTERN[: min(n, len(PATTERN))]
                self.wfile.write(b)
                n -= len(b)
            return
        if self.path.startswith("/status/"):
            code = int(self.path.split("/")[2])
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        total, digest = read_body(self)
        body = json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "bytes": total,
            "sha256": digest,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = handle_any


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
