#!/usr/bin/python3
"""fuzz/net/netfuzz.py: the network fuzzer (make fuzz-net).

A server on 127.0.0.1 (a free port) answers every request with a response
built from its X-Fuzz-Case number and the seed: mutated status lines,
header blocks (bare CR, obsolete line folding, huge lines, repeated and
nameless headers, NULs, LF-only ends), Content-Length and chunked framing
gone wrong, compressed and plain bodies, and connection behaviour (kept
alive and reused, closed, reset, cut mid-response, sent in fragments,
stalled past the client's timeout). fuzz/net/driver.lua, started here,
makes the calls through bearer's client and reports each outcome.

Counted: responses served, calls answered with a response, error objects by
kind, crashes (the driver died from a signal: its last responses are saved
under build/fuzz/net-crashes/ and it is restarted after the case), hangs (a
call that came back later than its timeout allows, or a driver silent that
long: killed by pid and restarted), and violations (a broken promise the
driver saw: not an error object, a secret in an error, a raise).
Exits non-zero on any crash, hang or violation. Stops by itself: after
--count calls or --max-seconds, whichever comes first.
"""
import argparse
import collections
import gzip
import os
import random
import socket
import subprocess
import sys
import threading
import time
import zlib

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# {====================================================== responses

REASONS = [b"OK", b"Not Found", b"", b"NM", b"x" * 300, b"\xff\xfe", b"OK OK OK", b"\t"]
STATUS_CODES = [200, 200, 200, 201, 204, 206, 301, 304, 400, 401, 403, 404, 408, 409,
                410, 413, 422, 429, 500, 502, 503, 504, 599, 100, 101, 103, 0, 99, 999, 1000]
JSON_BODIES = [
    b'{"ok":true,"data":{"id":"d1","items":[1,2,3]}}',
    b'{"success":false,"error":"invalid_api_key","message":"Invalid API key"}',
    b'{"error":{"code":"AUTH002","message":"forbidden","missing":["scope"]}}',
    b'{"detail":[{"loc":["body","x"],"msg":"field required","type":"missing"}]}',
    b'{"detail":"Not Found","message":null,"error":null}',
    b'{"code":"RATE","message":"slow down","retry_after":3}',
    b'[' * 2000 + b']' * 2000,
    b'{"a":' * 500 + b'1' + b'}' * 500,
    b'{"n":1e999999,"m":-0,"s":"\\ud800\\udc00\\u0000"}',
    b'{"truncated":',
    b'\xef\xbb\xbf{"bom":1}',
    b'null', b'"just a string"', b'',
]
OTHER_BODIES = [b"<html>error</html>", b"plain text\r\nsecond line", b"\x00\x01\x02" * 50,
                b"netfuzzsecret0123456789ABCDEFxyz echoed back"]
HEADER_POOL = [
    (b"Content-Type", b"application/json"), (b"Content-Type", b"application/json; charset=utf-8"),
    (b"Content-Type", b"text/html"), (b"X-Request-Id", b"req-123"), (b"Request-Id", b"r\x01\x02"),
    (b"Retry-After", b"2"), (b"Retry-After", b"0x10"), (b"Retry-After", b"1e1"),
    (b"Retry-After", b"Wed, 21 Oct 2015 07:28:00 GMT"), (b"Retry-After", b"-5"),
    (b"Retry-After", b"99999999999999999999"), (b"Set-Cookie", b"a=b; Path=/"),
    (b"Location", b"http://evil.example/x"), (b"Date", b"Tue, 01 Dec 2026 00:00:00 GMT"),
    (b"Server", b"fuzz"), (b"Vary", b"Accept"), (b"X-Empty", b""),
    (b"Content-Encoding", b"gzip"), (b"Content-Encoding", b"deflate"),
    (b"Content-Encoding", b"br"), (b"Content-Encoding", b"identity, gzip"),
    (b"Transfer-Encoding", b"99999999999999999999"), (b"Transfer-Encoding", b"gzip, chunked"),
    (b"Connection", b"close"), (b"Connection", b"keep-alive"), (b"Keep-Alive", b"timeout=0"),
    (b"Trailer", b"X-T"), (b"Upgrade", b"h2c"), (b"Content-Length", b"-1"),
    (b"Content-Length", b"18446744073709551616"), (b"Content-Length", b"5, 6"),
    (b"Authorization", b"Bearer netfuzzsecret0123456789ABCDEFxyz"),
]


def status_line(rng, code):
    v = rng.random()
    reason = rng.choice(REASONS)
    if v < 0.85:
        return b"HTTP/1.1 %d %s" % (code, reason)
    return rng.choice([
        b"HTTP/1.0 %d %s" % (code, reason), b"HTTP/1.1 %d" % code, b"HTTP/2 %d" % code,
        b"HTTP/1.1 abc OK", b"HTTP/1.1  %d  %s" % (code, reason), b"http/1.1 %d ok" % code,
        b"HTTP/1.1 %d %s\x00more" % (code, reason), b"HTTP/9.9 %d x" % code, b"ICY 200 OK",
        b"HTTP/1.1 -%d x" % code, b"HTTP/1.1 0%d x" % code, b"",
    ])


def header_lines(rng):
    lines = [b"%s: %s" % rng.choice(HEADER_POOL) for _ in range(rng.randrange(0, 6))]
    for _ in range(rng.randrange(0, 3)):
        kind = rng.randrange(9)
        if kind == 0:
            lines.append(b"X-Huge: " + b"h" * rng.choice([1000, 8000, 70000, 110000, 300000]))
        elif kind == 1:
            lines.extend([b"X-Rep: %d" % i for i in range(rng.choice([2, 50, 2000, 20000]))])
        elif kind == 2:
            lines.append(b" folded continuation")      # obs-fold
        elif kind == 3:
            lines.append(b"\tX-Tab: starts with a tab")
        elif kind == 4:
            lines.append(b"no colon at all")
        elif kind == 5:
            lines.append(b": no name")
        elif kind == 6:
            lines.append(b"X-Space : before colon")
        elif kind == 7:
            lines.append(b"X-Nul: a\x00b")
        else:
            lines.append(b"X-High: \x80\xff\xfe")
    rng.shuffle(lines)
    return lines


def join_lines(rng, lines):
    """The header block's line ends: mostly CRLF, sometimes LF, bare CR or mixed."""
    mode = rng.random()
    if mode < 0.75:
        return b"".join(l + b"\r\n" for l in lines), True
    if mode < 0.85:
        return b"".join(l + b"\n" for l in lines), True
    # bare CRs and folds between lines: issue 12's libcurl 7.88.1 double free
    out = b""
    for l in lines:
        out += l + rng.choice([b"\r", b"\r\n", b"\r\n ", b"\n", b"\r\r\n"])
    return out, False


def body_for(rng, code):
    if rng.random() < 0.75:
        body = rng.choice(JSON_BODIES)
        ctype = b"application/json"
    else:
        body = rng.choice(OTHER_BODIES)
        ctype = b"text/plain"
    if rng.random() < 0.03:
        body = b"x" * rng.choice([70000, 1100000])   # past max_response_bytes
    return body, ctype


def chunked(rng, body):
    out, i = b"", 0
    while i < len(body):
        piece = body[i:i + rng.randrange(1, 9000)]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        i += len(piece)
    out += b"0\r\n"
    if rng.random() < 0.2:
        out += b"X-Trailer: t\r\n"
    return out + b"\r\n"


def broken_chunked(rng, body):
    return rng.choice([
        b"zz\r\n" + body + b"\r\n0\r\n\r\n",
        b"ffffffffffffffffff\r\n" + body,
        b"%x\r\n" % (len(body) + 10) + body + b"\r\n0\r\n\r\n",
        b"-1\r\n\r\n",
        b"%x;ext=1;q=\"x\"\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
        b"%x\r\n" % len(body) + body + b"0\r\n\r\n",           # missing CRLF after data
        b"%x\n" % len(body) + body + b"\n0\n\n",                 # LF only
        b"%x\r\n" % len(body) + body + b"\r\n",                  # no last chunk
    ])


def mutate_bytes(rng, data):
    data = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        if not data:
            break
        op, at = rng.randrange(5), rng.randrange(len(data))
        if op == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[at:at] = rng.choice([b"\r", b"\n", b"\r\n", b" ", b"\x00", b":", b"\r\n\r\n"])
        elif op == 2:
            del data[at:at + rng.randrange(1, 16)]
        elif op == 3:
            data[at:at] = data[at:at + rng.randrange(1, 64)]
        else:
            data[at] = rng.randrange(256)
    return bytes(data)


class Plan:
    """One response: its bytes and what the connection does around them."""

    def __init__(self, data, keep_open, idle, stall=0.0, cut=None, reset=False, fragments=1):
        self.data, self.keep_open, self.idle = data, keep_open, idle
        self.stall, self.cut, self.reset, self.fragments = stall, cut, reset, fragments


BENIGN = HEADER_POOL[:16]   # headers that leave the framing alone


def clean_plan(rng, code, method, timeout):
    """A well-formed response on a connection kept open: what the next,
    hostile, response then arrives on (libcurl reuses the connection)."""
    interim = b""
    if 100 <= code < 200:   # an interim response comes before a final one
        interim = b"HTTP/1.1 %d Continue\r\n\r\n" % code if code != 101 else b""
        code = 200
    body, ctype = body_for(rng, code)
    if method == "HEAD" or code in (204, 304) or 100 <= code < 200:
        body = b""
    lines = [b"Content-Type: " + ctype]
    lines += [b"%s: %s" % rng.choice(BENIGN) for _ in range(rng.randrange(0, 3))]
    if rng.random() < 0.7 or not body:
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    else:
        lines.append(b"Transfer-Encoding: chunked")
        payload = chunked(rng, body)
    head = b"".join(l + b"\r\n" for l in [b"HTTP/1.1 %d %s" % (code, rng.choice(REASONS[:4]))] + lines)
    return Plan(interim + head + b"\r\n" + payload, keep_open=True, idle=timeout + 3)


def hostile_plan(rng, code, method, timeout):
    body, ctype = body_for(rng, code)
    if rng.random() < 0.2:
        enc = rng.choice(["gzip", "deflate", "bad"])
        if enc == "gzip":
            body = gzip.compress(body)
        elif enc == "deflate":
            body = zlib.compress(body)
        else:
            body = b"\x1f\x8b\x08\x00garbage"
        extra = [b"Content-Encoding: " + (b"gzip" if enc != "deflate" else b"deflate")]
    else:
        extra = []
    lines = [b"Content-Type: " + ctype] + extra + header_lines(rng)
    framing = rng.choices(["length", "chunked", "close", "short", "long", "badchunk"],
                          [45, 20, 8, 9, 8, 10])[0]
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        payload = chunked(rng, body)
    elif framing == "close":
        payload = body
    elif framing == "short":
        lines.append(b"Content-Length: %d" % (len(body) + rng.randrange(1, 100000)))
        payload = body
    elif framing == "long":
        lines.append(b"Content-Length: %d" % max(0, len(body) - rng.randrange(1, 20)))
        payload = body + b"HTTP/1.1 200 OK\r\n"      # the rest poisons the next response
    else:
        lines.append(b"Transfer-Encoding: chunked")
        payload = broken_chunked(rng, body)
    if rng.random() < 0.15:
        lines.append(rng.choice([b"Content-Length: %d" % len(body), b"Content-Length: 0",
                                 b"Transfer-Encoding: chunked"]))   # conflicting framing
        framing = "conflict"
    head, clean_ends = join_lines(rng, [status_line(rng, code)] + lines)
    data = head + b"\r\n" + payload
    if rng.random() < 0.05:
        data = b"HTTP/1.1 100 Continue\r\n\r\n" + data
    mutated = rng.random() < 0.15
    if mutated:
        data = mutate_bytes(rng, data)
    # After a response whose end is plain, the connection waits a moment for
    # the next request (libcurl may reuse it); after any other it closes, so
    # the client never waits in vain for bytes that will not come.
    exact = (framing in ("length", "chunked", "long") and clean_ends and not mutated
             and not 100 <= code < 200)
    plan = Plan(data, keep_open=exact, idle=0.3 if exact else 0)
    r = rng.random()
    if r < 0.0008:
        plan.stall = timeout + 0.5          # the client's timeout must fire
    elif r < 0.06:
        plan.cut = rng.randrange(len(data) + 1)
        plan.reset = rng.random() < 0.5
    elif r < 0.25:
        plan.fragments = rng.randrange(2, 40)
    return plan


def make_plan(seed, case, method, timeout):
    rng = random.Random("%d:%d" % (seed, case))
    code = rng.choice(STATUS_CODES)
    if rng.random() < 0.5:
        return clean_plan(rng, code, method, timeout)
    return hostile_plan(rng, code, method, timeout)

# }======================================================

# {====================================================== server


class Server:
    def __init__(self, seed, timeout):
        self.seed, self.timeout = seed, timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.responses = 0
        self.connections = 0
        self.recent = collections.deque(maxlen=8)   # (case, connection, bytes) for crash files
        self.stopping = False

    def serve_forever(self):
        conn_id = 0
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn_id += 1
            with self.lock:
                self.connections = conn_id
            threading.Thread(target=self.handle, args=(conn, conn_id), daemon=True).start()

    def read_request(self, conn, buf):
        """(case, method, rest of buffer) or None when the client went away."""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        method = lines[0].split(b" ")[0].decode("latin1")
        case, length = 0, 0
        for l in lines[1:]:
            name, _, value = l.partition(b":")
            name = name.strip().lower()
            if name == b"x-fuzz-case":
                case = int(value.strip() or 0)
            elif name == b"content-length":
                length = int(value.strip() or 0)
        while len(buf) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
        return case, method, buf[length:]

    def handle(self, conn, conn_id):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf, idle = b"", self.timeout + 3
        try:
            while True:
                conn.settimeout(idle)
                req = self.read_request(conn, buf)
                if req is None:
                    break
                case, method, buf = req
                plan = make_plan(self.seed, case, method, self.timeout)
                with self.lock:
                    self.responses += 1
                    self.recent.append((case, conn_id, plan.data))
                self.send(conn, plan)
                if not plan.keep_open:
                    break
                idle = plan.idle
        except (OSError, ValueError):
            pass
        finally:
            self.close(conn, reset=False)

    def send(self, conn, plan):
        data = plan.data
        if plan.stall:
            time.sleep(plan.stall)
        if plan.cut is not None:
            conn.sendall(data[:plan.cut])
            self.close(conn, plan.reset)
            raise OSError("cut")
        if plan.fragments > 1:
            step = max(1, len(data) // plan.fragments)
            for i in range(0, len(data), step):
                conn.sendall(data[i:i + step])
        else:
            conn.sendall(data)

    @staticmethod
    def close(conn, reset):
        try:
            if reset:     # RST instead of FIN
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            else:
                conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.close()

# }======================================================

# {====================================================== driver runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100000, help="calls to make")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--first", type=int, default=1, help="first case (to replay one: --first N --count 1)")
    ap.add_argument("--timeout", type=float, default=2.0, help="each call's timeout (s)")
    ap.add_argument("--max-seconds", type=float, default=1800, help="stop after this long")
    ap.add_argument("--lua", default="lua5.4")
    ap.add_argument("--show-slow", action="store_true", help="list calls that took over 1 s")
    args = ap.parse_args()

    os.chdir(ROOT)
    server = Server(args.seed, args.timeout)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, LUA_PATH="lua/?.lua;lua/?/init.lua;;", LUA_CPATH="build/5.4/?.so;;")
    crash_dir = os.path.join("build", "fuzz", "net-crashes")
    grace = 1.0                       # beyond the timeout, a call is a hang
    silent_limit = args.timeout * 2 + 15
    started = time.monotonic()
    calls = answered = crashes = hangs = violations = 0
    kinds = collections.Counter()
    findings = []
    case = args.first
    last = args.first + args.count - 1
    while case <= last and time.monotonic() - started < args.max_seconds:
        proc = subprocess.Popen([args.lua, "fuzz/net/driver.lua", str(server.port), str(case),
                                 str(last), str(args.timeout)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        last_line = [time.monotonic()]
        lines = collections.deque()
        cv = threading.Condition()

        def reader(p=proc, q=lines, c=cv, t=last_line):
            for raw in p.stdout:
                with c:
                    q.append(raw.decode("latin1").rstrip("\n"))
                    t[0] = time.monotonic()
                    c.notify()
            with c:
                q.append(None)
                c.notify()
        threading.Thread(target=reader, daemon=True).start()
        ended = False
        while not ended:
            with cv:
                cv.wait_for(lambda: lines, timeout=1.0)
                batch = list(lines)
                lines.clear()
            for line in batch:
                if line is None:
                    ended = True
                    break
                f = line.split(" ")
                if f[0] in ("R", "E"):
                    calls += 1
                    case = int(f[1]) + 1
                    ms = float(f[-1])
                    if f[0] == "R":
                        answered += 1
                    else:
                        kinds["%s/%s" % (f[2], f[3])] += 1
                    if args.show_slow and ms > 1000:
                        print("fuzz-net: slow: " + line)
                    if ms > (args.timeout + grace) * 1000:
                        hangs += 1
                        findings.append("hang: case %s took %.0f ms" % (f[1], ms))
                elif f[0] == "X":
                    calls += 1
                    case = int(f[1]) + 1
                    violations += 1
                    findings.append("violation: case %s: the call raised: %s" % (f[1], " ".join(f[3:])))
                elif f[0] == "V":
                    violations += 1
                    findings.append("violation: case %s: %s" % (f[1], " ".join(f[2:])))
            if ended:
                break
            if time.monotonic() - last_line[0] > silent_limit:
                hangs += 1
                findings.append("hang: the driver was silent %.0f s after case %d; killed" %
                                (silent_limit, case - 1))
                proc.kill()
                calls += 1
                case += 1              # the stuck case counts as made
            if time.monotonic() - started > args.max_seconds:
                proc.kill()
        rc = proc.wait()
        err = proc.stderr.read().decode("latin1", "replace")
        if rc < 0 and rc != -9:
            crashes += 1
            calls += 1
            os.makedirs(crash_dir, exist_ok=True)
            path = os.path.join(crash_dir, "crash-seed%d-case%d.txt" % (args.seed, case))
            with open(path, "w") as out:
                out.write("driver died from signal %d in case %d (seed %d)\n%s\n" %
                          (-rc, case, args.seed, err[-4000:]))
                with server.lock:
                    for c_case, conn, data in server.recent:
                        out.write("--- case %d, connection %d, %d bytes:\n%r\n" %
                                  (c_case, conn, len(data), data[:4000]))
            findings.append("crash: signal %d in case %d (%s); last line of stderr: %s" %
                            (-rc, case, path, (err.strip().splitlines() or [""])[-1]))
            case += 1
        elif rc != 0 and rc != -9:
            violations += 1
            findings.append("driver exited with %d: %s" % (rc, err.strip()[-500:]))
            break
    server.stopping = True
    seconds = time.monotonic() - started
    print("fuzz-net: %d calls, %d responses served on %d connections in %.0f s "
          "(seed %d, timeout %.1f s)" % (calls, server.responses, server.connections, seconds,
                                         args.seed, args.timeout))
    print("fuzz-net: %d answered with a response, %d with an error object" %
          (answered, sum(kinds.values())))
    by_kind = collections.defaultdict(collections.Counter)
    for k, n in kinds.items():
        kind, _, code = k.partition("/")
        by_kind[kind][code] += n
    for kind, codes in sorted(by_kind.items(), key=lambda kv: -sum(kv[1].values())):
        top = ", ".join("%s %d" % kv for kv in codes.most_common(4))
        more = " ..." if len(codes) > 4 else ""
        print("fuzz-net:   %-11s %6d  (%s%s)" % (kind, sum(codes.values()), top, more))
    for f in findings[:12]:
        print("fuzz-net: " + f)
    if len(findings) > 12:
        print("fuzz-net: ... %d more findings" % (len(findings) - 12))
    print("fuzz-net: %d crashes, %d hangs, %d violations" % (crashes, hangs, violations))
    return 0 if crashes == hangs == violations == 0 and calls >= args.count else 1


if __name__ == "__main__":
    sys.exit(main())
