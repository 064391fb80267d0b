# A probe run INSIDE a sandbox by the egress end-to-end tests (copied in through the files API).
# Each command prints one JSON line: what the sandbox could or could not reach, and how it failed.
import json
import os
import socket
import ssl
import struct
import sys
import time
import urllib.request


def out(**kw):
    print(json.dumps(kw), flush=True)


def err_name(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, OSError) and e.errno is not None:
        return os.strerror(e.errno)
    return type(e).__name__ + ": " + str(e)


def request(method, url, body=""):
    """`method` to `url` with a JSON body (protocol and MCP rules)."""
    req = urllib.request.Request(url, method=method, data=body.encode() if body else None)
    if body:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            out(status=r.status, body=r.read().decode())
    except urllib.error.HTTPError as e:
        out(status=e.code, body=e.read().decode())
    except Exception as e:  # noqa: BLE001
        out(error=err_name(getattr(e, "reason", e)))


def http(url, *headers):
    req = urllib.request.Request(url)
    for h in headers:
        k, v = h.split(":", 1)
        req.add_header(k, v.strip())
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            out(status=r.status, body=r.read().decode())
    except urllib.error.HTTPError as e:
        out(status=e.code, body=e.read().decode())
    except Exception as e:  # noqa: BLE001 - every failure is a result here
        reason = getattr(e, "reason", e)
        out(error=err_name(reason) if isinstance(reason, Exception) else str(reason))


def raw_http(ip, port, host):
    """GET / to ip:port with the given Host header (fronting attempts)."""
    try:
        s = socket.create_connection((ip, int(port)), timeout=5)
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        out(response=data.decode(errors="replace"))
    except Exception as e:  # noqa: BLE001
        out(error=err_name(e))


def tls_sni(ip, port, sni):
    """A TLS handshake to ip:port naming `sni` (no verification: only whether it gets through)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        s = socket.create_connection((ip, int(port)), timeout=5)
        t = ctx.wrap_socket(s, server_hostname=sni)
        t.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % sni).encode())
        out(response=t.recv(65536).decode(errors="replace"))
    except Exception as e:  # noqa: BLE001
        out(error=err_name(e))


def tcp(host, port):
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"ping\n")
        s.settimeout(5)
        data = s.recv(100)
        out(echo=data.decode(errors="replace"))
    except Exception as e:  # noqa: BLE001
        out(error=err_name(e))


def tcp6(host, port):
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.settimeout(3)
        s.connect((host, int(port)))
        out(connected=True)
    except Exception as e:  # noqa: BLE001
        out(error=err_name(e))


def udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(b"hello-udp", (host, int(port)))
        data, _ = s.recvfrom(100)
        out(echo=data.decode(errors="replace"))
    except Exception as e:  # noqa: BLE001
        out(error=err_name(e))


def dns_query(name, qtype=1):
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", qtype, 1)


def dns_answer(reply):
    rcode = reply[3] & 0xF
    an = struct.unpack(">H", reply[6:8])[0]
    # skip the question
    i = 12
    while reply[i] != 0:
        i += reply[i] + 1
    i += 5
    ips = []
    for _ in range(an):
        if reply[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while reply[i] != 0:
                i += reply[i] + 1
            i += 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", reply[i:i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            ips.append(".".join(str(b) for b in reply[i:i + 4]))
        i += rdlen
    return rcode, ips


def dns(name, server="", transport="udp"):
    """A query to `server` (default: resolv.conf's) over UDP or TCP."""
    if not server:
        with open("/etc/resolv.conf") as f:
            server = [l.split()[1] for l in f if l.startswith("nameserver")][0]
    q = dns_query(name)
    try:
        if transport == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(3)
            s.sendto(q, (server, 53))
            reply, _ = s.recvfrom(4096)
        else:
            s = socket.create_connection((server, 53), timeout=3)
            s.sendall(struct.pack(">H", len(q)) + q)
            n = struct.unpack(">H", s.recv(2))[0]
            reply = s.recv(n)
        rcode, ips = dns_answer(reply)
        out(rcode=rcode, ips=ips)
    except Exception as e:  # noqa: BLE001
        out(error=err_name(e))


def hold(host, port, log):
    """Keeps one TCP connection, echoing a line every 100 ms; logs `ok` or how it ended."""
    with open(log, "a", buffering=1) as f:
        try:
            s = socket.create_connection((host, int(port)), timeout=5)
            f.write("connected\n")
            for i in range(600):
                s.sendall(b"x\n")
                s.settimeout(5)
                if not s.recv(10):
                    f.write("closed\n")
                    return
                if i == 0:
                    f.write("echoed\n")  # through the proxy and back: the flow is allowed and open
                time.sleep(0.1)
            f.write("done\n")
        except Exception as e:  # noqa: BLE001
            f.write("ended " + err_name(e) + "\n")


def raw_socket():
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        out(opened=True)
    except Exception as e:  # noqa: BLE001
        out(error=err_name(e))


COMMANDS = {
    "http": http,
    "request": request,
    "raw_http": raw_http,
    "tls_sni": tls_sni,
    "tcp": tcp,
    "tcp6": tcp6,
    "udp": udp,
    "dns": dns,
    "hold": hold,
    "raw_socket": raw_socket,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
