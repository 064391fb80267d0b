// The runner of `function` services: a python program started in the sandbox with
// `python3 -c FUNCTION_RUNNER`; it reads the handler's source from stdin, then serves HTTP on
// $S0_FUNCTION_PORT (all interfaces: the ingress proxy reaches it at the sandbox's address).
//
// The handler gets one argument, a dict: method, path, query (name -> first value), headers
// (lower-case names), body (str; bytes that are not UTF-8 come as latin-1), json (the parsed body
// when it is JSON, else None). What it returns becomes the response:
//   dict of status_code (or statusCode), headers, body only -> that status, headers and body;
//   any other dict / list / number / bool -> JSON, 200;  str -> text/plain;  bytes -> octet-stream;
//   None -> 204.  An exception -> 500 {"error": "..."} (the traceback goes to the process output).
// `async def` handlers work too. max_concurrency > 0 bounds calls in flight (others wait).
export const FUNCTION_RUNNER = String.raw`
import asyncio, inspect, json, os, sys, threading, traceback, types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

source = sys.stdin.read()
module = types.ModuleType("s0_function")
exec(compile(source, "<function>", "exec"), module.__dict__)
handler_name = os.environ.get("S0_FUNCTION_HANDLER") or "handler"
fn = getattr(module, handler_name, None)
if not callable(fn):
    print("s0 function: no callable named %r in the source" % handler_name, file=sys.stderr)
    sys.exit(2)
limit = int(os.environ.get("S0_FUNCTION_MAX_CONCURRENCY") or "0")
gate = threading.BoundedSemaphore(limit) if limit > 0 else None

def call(req):
    out = fn(req)
    if inspect.isawaitable(out):
        out = asyncio.run(out)
    return out

RESPONSE_KEYS = {"status_code", "statusCode", "headers", "body"}

def encode(out):
    if out is None:
        return 204, {}, b""
    if isinstance(out, dict) and ("status_code" in out or "statusCode" in out) and set(out) <= RESPONSE_KEYS:
        status = int(out.get("status_code", out.get("statusCode", 200)))
        headers = {str(k): str(v) for k, v in (out.get("headers") or {}).items()}
        body = out.get("body", b"")
        if isinstance(body, (dict, list)):
            headers.setdefault("Content-Type", "application/json")
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            body = body.encode()
        elif body is None:
            body = b""
        return status, headers, bytes(body)
    if isinstance(out, bytes):
        return 200, {"Content-Type": "application/octet-stream"}, out
    if isinstance(out, str):
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, out.encode()
    return 200, {"Content-Type": "application/json"}, json.dumps(out).encode()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or "0")
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        parsed = None
        if "json" in (self.headers.get("Content-Type") or "") and raw:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
        url = urlsplit(self.path)
        req = {
            "method": self.command,
            "path": url.path,
            "query": {k: v[0] for k, v in parse_qs(url.query).items()},
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": text,
            "json": parsed,
        }
        if gate:
            gate.acquire()
        try:
            status, headers, body = encode(call(req))
        except Exception as err:
            traceback.print_exc()
            status, headers, body = 500, {"Content-Type": "application/json"}, json.dumps({"error": str(err)}).encode()
        finally:
            if gate:
                gate.release()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

Server(("0.0.0.0", int(os.environ["S0_FUNCTION_PORT"])), Handler).serve_forever()
`
