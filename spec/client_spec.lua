local bearer = require "bearer"
local core = require "bearer.core"
local emulator = require "support.emulator"
local subprocess = require "support.subprocess"

local KEY = emulator.OVERTEN_KEY

describe("bearer.client #integration", function()
  local emu

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() emu:reset() end)

  -- A client of the emulator whose sleeps are recorded, not slept.
  local function client(opts)
    opts = opts or {}
    local slept = {}
    if opts.key == false then opts.key = nil else opts.key = opts.key or KEY end
    opts.base_url = opts.base_url or emu.url
    opts.sleep = opts.sleep or function(s) slept[#slept + 1] = s end
    return bearer.client(opts), slept
  end

  local function count(path) return #emu:requests(path) end

  describe("requests", function()
    it("sends the key as a bearer token by default", function()
      local c = client{ base_url = emu:overten_url() }
      local res = assert(c:get("/verify"))
      assert.equal(200, res.status)
      assert.equal("org_test", res.json.org_id)
      local seen = emu:requests("/api/v1/verify")[1]
      assert.equal("Bearer " .. KEY, seen.headers.authorization)
      assert.is_nil(seen.headers["x-api-key"])
    end)

    it("sends X-API-Key when auth = 'x-api-key'", function()
      local c = client{ base_url = emu:overten_url(), auth = "x-api-key" }
      assert.equal("org_test", assert(c:get("/verify")).json.org_id)
      local seen = emu:requests("/api/v1/verify")[1]
      assert.equal(KEY, seen.headers["x-api-key"])
      assert.is_nil(seen.headers.authorization)
    end)

    it("returns status, lower-case headers, body and decoded JSON", function()
      local res = assert(client():get("/echo/x"))
      assert.equal(200, res.status)
      assert.truthy(res.headers["content-type"]:find("json"))
      assert.truthy(res.headers["x-request-id"])
      assert.equal("string", type(res.body))
      assert.equal("GET", res.json.method)
    end)

    it("URL-encodes query values and keeps them in a stable order", function()
      local res = assert(client():get("/echo/q", {
        query = { q = "a b&c=d/é", list = { 1, 2 }, flag = true, skip = nil } }))
      assert.equal("flag=true&list=1&list=2&q=a%20b%26c%3Dd%2F%C3%A9", res.json.query)
    end)

    it("encodes json bodies and sends other bodies as they are", function()
      local c = client()
      local res = assert(c:post("/echo/j", { json = { name = "x", n = 3 } }))
      assert.equal("application/json", res.json.headers["content-type"])
      assert.same({ name = "x", n = 3 }, require("cjson").decode(res.json.body))
      res = assert(c:put("/echo/b", { body = "raw bytes", headers = { ["Content-Type"] = "text/plain" } }))
      assert.equal("PUT", res.json.method)
      assert.equal("raw bytes", res.json.body)
      assert.equal("text/plain", res.json.headers["content-type"])
      res = assert(c:delete("/echo/d"))
      assert.equal("DELETE", res.json.method)
      res = assert(c:request("PATCH", "/echo/p", { json = { a = 1 } }))
      assert.equal("PATCH", res.json.method)
      res = assert(c:head("/echo/h"))
      assert.equal(200, res.status)
      assert.equal("", res.body)
    end)

    it("sends its user agent and default and per-call headers", function()
      local c = client{ headers = { ["X-Team"] = "docs", ["X-Both"] = "client" } }
      local h = assert(c:get("/echo/h", { headers = { ["X-Both"] = "call" } })).json.headers
      assert.truthy(h["user-agent"]:find("^bearer/" .. bearer._VERSION:gsub("%.", "%%.") .. " Lua/5%.4 libcurl/"))
      assert.equal("docs", h["x-team"])
      assert.equal("call", h["x-both"])
      local custom = client{ user_agent = "my-app/1.0" }
      assert.equal("my-app/1.0", assert(custom:get("/echo/u")).json.headers["user-agent"])
      -- a call's own User-Agent header goes out instead, and alone (in any case)
      for _, name in ipairs{ "User-Agent", "user-agent" } do
        local res = assert(custom:get("/echo/u", { headers = { [name] = "per-call/2" } }))
        assert.equal("per-call/2", res.json.headers["user-agent"])
      end
      -- a proxy's CONNECT names the client too (the header list goes to the
      -- API alone); the emulator, as the proxy, refuses the tunnel
      local lines = {}
      local tunneled = client{ base_url = "https://api.example.com", proxy = emu.url, key = false,
                               user_agent = "my-app/1.0", max_retries = 0,
                               log = function(line) lines[#lines + 1] = line end }
      assert.is_nil((tunneled:get("/u")))
      local logged = table.concat(lines, "\n")
      assert.truthy(logged:find("CONNECT api.example.com:443", 1, true), logged)
      assert.truthy(logged:find("User-Agent: my-app/1.0", 1, true), logged)
    end)

    it("never lets a caller's Authorization header replace the key", function()
      local c = client()
      local h = assert(c:get("/echo/a", { headers = { Authorization = "Bearer other" } })).json.headers
      assert.equal("Bearer " .. KEY, h.authorization)
    end)

    it("reuses one connection across calls (keep-alive)", function()
      local c = client()
      for _ = 1, 4 do assert(c:get("/echo/k")) end
      local seen = emu:requests()
      assert.equal(4, #seen)
      for i = 2, 4 do assert.equal(seen[1].connection, seen[i].connection) end
    end)
  end)

  describe("safety", function()
    it("refuses header injection before sending anything", function()
      local c = client()
      for _, h in ipairs{ { ["X-A"] = "v\r\nX-Evil: 1" }, { ["X-A"] = "v\nX" },
                          { ["X-A"] = "v\0" }, { ["X A"] = "v" }, { ["X:A"] = "v" } } do
        local ok, msg = pcall(c.get, c, "/echo/i", { headers = h })
        assert.is_false(ok)
        assert.truthy(tostring(msg):find("header", 1, true))
      end
      assert.equal(0, count())
    end)

    it("does not follow a redirect: a 3xx is data for the caller", function()
      local c = client{ base_url = emu:overten_url() }
      local runs = assert(c:get("/runs", { query = { limit = 100 } })).json.data
      local done
      for _, run in ipairs(runs) do
        if run.status == "completed" then done = run break end
      end
      local res = assert(c:get("/runs/" .. done.run_id .. "/download"))
      assert.equal(302, res.status)
      assert.truthy(res.headers.location)
      assert.equal(0, #emu:requests(res.headers.location:match("^https?://[^/]+([^?]*)")))
    end)

    it("refuses credentials over plain http except to loopback", function()
      -- The proxy is the emulator: had the rule failed, the request would
      -- have reached it (and nothing would have left the machine).
      local c = client{ base_url = "http://api.example.com", proxy = emu.url }
      local res, err = c:get("/verify")
      assert.is_nil(res)
      assert.equal("config", err.kind)
      assert.equal("insecure_transport", err.code)
      assert.is_false(err.retryable)
      assert.equal(0, count())
      -- without a credential the same request goes out
      local anon = client{ base_url = "http://api.example.com", proxy = emu.url, key = false }
      anon:get("/verify")
      assert.equal(1, count())
      -- loopback by name is fine
      local port = emu.url:match(":(%d+)$")
      assert(client{ base_url = "http://localhost:" .. port }:get("/echo/l"))
    end)

    it("speaks only http and https", function()
      for _, base in ipairs{ "ftp://127.0.0.1", "file:///etc", "gopher://127.0.0.1", "dict://127.0.0.1" } do
        local res, err = client{ base_url = base, key = false }:get("/x")
        assert.is_nil(res)
        assert.equal("config", err.kind, base)
      end
      local _, err = client{ base_url = "not a url" }:get("/x")
      assert.equal("config", err.kind)
    end)

    it("cuts off a response larger than max_response_bytes", function()
      for _, chunked in ipairs{ false, true } do
        emu:reset()
        emu:fault{ path = "/echo/big", type = "huge", bytes = 3 * 1024 * 1024, chunked = chunked }
        local res, err = client{ max_response_bytes = 1024 * 1024 }:get("/echo/big")
        assert.is_nil(res)
        assert.equal("too_large", err.kind)
        assert.equal("response_too_large", err.code)
        assert.equal(1, err.attempts)
        assert.equal(1, count("/echo/big"))
      end
    end)

    it("keeps the key out of error messages, even when the server echoes it", function()
      emu:fault{ path = "/echo/e", type = "status", status = 400,
                 body = '{"error":"invalid_request","message":"bad key ' .. KEY .. '"}' }
      local _, err = client():get("/echo/e")
      assert.equal("invalid_request", err.code)
      assert.is_nil(err.message:find(KEY, 1, true))
      assert.is_nil(tostring(err):find(KEY, 1, true))
      assert.is_nil(err.body:find(KEY, 1, true))
      assert.truthy(err.message:find("[REDACTED]", 1, true))
    end)

    it("swaps its key for the next calls", function()
      local c = client()
      local other = bearer.key("opaque-refreshed-token-1")
      assert.equal(KEY, c:key():reveal())
      c:set_key(other)
      assert.equal(other, c:key())
      assert.equal("Bearer opaque-refreshed-token-1", assert(c:get("/echo/s")).json.headers.authorization)
      c:set_key(nil)
      assert.is_nil(assert(c:get("/echo/s")).json.headers.authorization)
      assert.has_error(function() c:set_key("string") end)
    end)

    it("never sends a plain-http credential through a proxy", function()
      -- a proxy that is not there: the request must go to the loopback host itself
      local c = client{ proxy = "http://127.0.0.1:1" }
      assert.equal("Bearer " .. KEY, assert(c:get("/echo/p")).json.headers.authorization)
      -- without a credential the proxy is used as asked
      local _, err = client{ proxy = "http://127.0.0.1:1", key = false, max_retries = 0 }:get("/echo/p")
      assert.equal("connection", err.kind)
    end)

    it("keeps its key anchored while no Lua code holds it", function()
      -- the C handle under the client is the key's only holder
      local c = core.client_new{ key = bearer.key(KEY) }
      collectgarbage()
      collectgarbage()
      assert.equal(KEY, c:key():reveal())
      local res = assert(c:perform("GET", emu.url .. "/echo/a", {}, nil, {}))
      assert.equal("Bearer " .. KEY, require("cjson").decode(res.body).headers.authorization)
    end)

    it("keeps a URL's query out of error paths and foreign trace lines", function()
      emu:fault{ path = "/echo/signed", type = "status", status = 403 }
      local lines = {}
      local c = client{ log = function(l) lines[#lines + 1] = l end }
      local _, err = c:get(emu.url .. "/echo/signed?X-Signature=SECRETSIG123", { credentials = false })
      assert.equal(emu.url .. "/echo/signed", err.path)
      assert.is_nil(tostring(err):find("SECRETSIG123", 1, true))
      local all = table.concat(lines, "\n")
      assert.is_nil(all:find("SECRETSIG123", 1, true))
      assert.truthy(all:find("?[REDACTED]", 1, true))
    end)

    it("refuses to use a closed client or a closed key", function()
      local c = client()
      c:close()
      assert.has_error(function() c:get("/echo/x") end)
      local key = bearer.key(KEY)
      local c2 = client{ key = key }
      key:close()
      local ok, msg = pcall(c2.get, c2, "/echo/x")
      assert.is_false(ok)
      assert.truthy(tostring(msg):find("closed bearer.Key", 1, true))
      assert.equal(0, count())
    end)
  end)

  describe("retries", function()
    local RETRIED = { 408, 429, 500, 502, 503, 504 }

    it("retries transient statuses for GET, HEAD, PUT and DELETE", function()
      for _, status in ipairs(RETRIED) do
        for _, method in ipairs{ "GET", "HEAD", "PUT", "DELETE" } do
          emu:reset()
          emu:fault{ path = "/echo/r", type = "status", status = status, times = -1 }
          local res, err = client():request(method, "/echo/r")
          assert.is_nil(res)
          assert.equal(status, err.status)
          assert.equal(3, err.attempts, method .. " " .. status)
          assert.equal(3, count("/echo/r"))
          assert.is_true(err.retryable)
          assert.equal(method, err.method)
          assert.equal("/echo/r", err.path)
        end
      end
    end)

    it("retries POST and PATCH only with an idempotency key", function()
      for _, status in ipairs(RETRIED) do
        for _, method in ipairs{ "POST", "PATCH" } do
          emu:reset()
          emu:fault{ path = "/echo/r", type = "status", status = status, times = -1 }
          local _, err = client():request(method, "/echo/r", { json = {} })
          assert.equal(1, err.attempts)
          assert.is_false(err.retryable)
          emu:reset()
          emu:fault{ path = "/echo/r", type = "status", status = status, times = -1 }
          _, err = client():request(method, "/echo/r", { json = {}, idempotency_key = "idem-1" })
          assert.equal(3, err.attempts)
          local seen = emu:requests("/echo/r")
          assert.equal(3, #seen)
          for _, r in ipairs(seen) do assert.equal("idem-1", r.headers["idempotency-key"]) end
        end
      end
    end)

    it("does not retry other statuses", function()
      for _, status in ipairs{ 400, 401, 402, 403, 404, 409, 410, 413, 422, 501 } do
        emu:reset()
        emu:fault{ path = "/echo/r", type = "status", status = status, times = -1 }
        local _, err = client():get("/echo/r")
        assert.equal(1, err.attempts, status)
        assert.is_false(err.retryable)
      end
    end)

    it("recovers when a retry succeeds", function()
      emu:fault{ path = "/echo/r", type = "status", status = 503, times = 2 }
      local c, slept = client()
      local res = assert(c:get("/echo/r"))
      assert.equal(200, res.status)
      assert.equal(3, count("/echo/r"))
      assert.equal(2, #slept)
    end)

    it("backs off min(0.5 * 2^n, 8) seconds with up to 25 % jitter", function()
      emu:fault{ path = "/echo/r", type = "status", status = 500, times = -1 }
      local c, slept = client{ max_retries = 6 }
      local _, err = c:get("/echo/r")
      assert.equal(7, err.attempts)
      local base = { 0.5, 1, 2, 4, 8, 8 }
      assert.equal(#base, #slept)
      for i, b in ipairs(base) do
        assert.is_true(slept[i] >= b and slept[i] <= b * 1.25, ("retry %d slept %s"):format(i, slept[i]))
      end
    end)

    it("honours Retry-After in seconds and as an HTTP date", function()
      emu:fault{ path = "/echo/r", type = "status", status = 429, retry_after = "3" }
      local c, slept = client()
      assert(c:get("/echo/r"))
      assert.same({ 3 }, slept)

      emu:reset()
      local now = 1800000000
      emu:fault{ path = "/echo/r", type = "status", status = 503,
                 retry_after = os.date("!%a, %d %b %Y %H:%M:%S GMT", now + 5) }
      local c2, slept2 = client{ clock = function() return now end }
      assert(c2:get("/echo/r"))
      assert.same({ 5 }, slept2)
    end)

    it("fails at once when Retry-After asks for more than 60 s", function()
      emu:fault{ path = "/echo/r", type = "status", status = 429, retry_after = "120", times = -1 }
      local c, slept = client()
      local _, err = c:get("/echo/r")
      assert.equal("rate_limit", err.kind)
      assert.equal(120, err.retry_after)
      assert.equal(1, err.attempts)
      assert.equal(0, #slept)
      assert.equal(1, count("/echo/r"))
    end)

    it("always retries a connection that was never made", function()
      local c, slept = client{ base_url = "http://127.0.0.1:1", key = false }
      for _, method in ipairs{ "GET", "POST" } do
        local _, err = c:request(method, "/x", { body = "x" })
        assert.equal("connection", err.kind)
        assert.equal("connect_failed", err.code)
        assert.is_false(err.sent)
        assert.equal(3, err.attempts)
      end
      assert.equal(4, #slept)
    end)

    it("retries a dropped connection after sending only when idempotent", function()
      emu:fault{ path = "/echo/r", type = "drop", times = -1 }
      local _, err = client():get("/echo/r")
      assert.equal("connection", err.kind)
      assert.is_true(err.sent)
      assert.equal(3, err.attempts)
      emu:reset()
      emu:fault{ path = "/echo/r", type = "drop", times = -1 }
      _, err = client():post("/echo/r", { json = {} })
      assert.equal(1, err.attempts)
      assert.equal(1, count("/echo/r"))
    end)

    it("never lets libcurl resend a call that must not run twice", function()
      -- a kept-alive connection first, then a POST whose connection dies
      -- without a reply: libcurl would resend it on a fresh one by itself
      local c = client()
      assert(c:get("/echo/warm"))
      emu:fault{ path = "/echo/once", type = "drop", times = -1 }
      local _, err = c:post("/echo/once", { json = {} })
      assert.equal("connection", err.kind)
      assert.equal(1, err.attempts)
      assert.equal(1, count("/echo/once"))
      -- idempotent calls keep their kept-alive connection
      emu:reset()
      assert(c:get("/echo/k1"))
      assert(c:post("/echo/k2", { json = {}, idempotency_key = "k" }))
      local seen = emu:requests()
      assert.equal(seen[1].connection, seen[2].connection)
    end)

    it("takes the retried statuses per call", function()
      emu:fault{ path = "/echo/r", type = "status", status = 408, times = -1 }
      local _, err = client():get("/echo/r", { retry_statuses = { 503 } })
      assert.equal(1, err.attempts)
      assert.is_false(err.retryable)
      emu:reset()
      emu:fault{ path = "/echo/r", type = "status", status = 418, times = -1 }
      _, err = client():get("/echo/r", { retry_statuses = { 418 } })
      assert.equal(3, err.attempts)
      assert.has_error(function() client():get("/echo/r", { retry_statuses = 503 }) end)
    end)

    it("takes max_retries per call", function()
      emu:fault{ path = "/echo/r", type = "status", status = 503, times = -1 }
      local c = client{ max_retries = 5 }
      local _, err = c:get("/echo/r", { max_retries = 0 })
      assert.equal(1, err.attempts)
      _, err = client{ max_retries = 0 }:get("/echo/r", { max_retries = 1 })
      assert.equal(2, err.attempts)
      assert.has_error(function() c:get("/echo/r", { max_retries = -1 }) end)
    end)

    it("times out a slow response and retries it when idempotent", function()
      emu:fault{ path = "/echo/r", type = "slow", delay = 2, times = -1 }
      local _, err = client{ timeout = 0.3, max_retries = 1 }:get("/echo/r")
      assert.equal("timeout", err.kind)
      assert.equal("timeout", err.code)
      assert.equal(2, err.attempts)
      emu:reset()
      emu:fault{ path = "/echo/r", type = "slow", delay = 2, times = -1 }
      _, err = client{ timeout = 0.3 }:post("/echo/r", { json = {} })
      assert.equal(1, err.attempts)
      -- a per-call timeout overrides the client's
      emu:reset()
      emu:fault{ path = "/echo/r", type = "slow", delay = 0.5 }
      assert(client{ timeout = 0.1, max_retries = 0 }:get("/echo/r", { timeout = 5 }))
    end)

    it("reports a truncated body as a connection failure", function()
      emu:fault{ path = "/echo/r", type = "truncate", times = -1 }
      local _, err = client{ max_retries = 0 }:get("/echo/r")
      assert.equal("connection", err.kind)
      assert.equal("partial_body", err.code)
    end)

    it("reports invalid JSON as a decode error, without retrying", function()
      emu:fault{ path = "/echo/r", type = "invalid_json", times = -1 }
      local _, err = client():get("/echo/r")
      assert.equal("decode", err.kind)
      assert.equal("invalid_json", err.code)
      assert.equal(1, err.attempts)
    end)
  end)

  describe("tracing", function()
    it("logs one line per request and per response, redacted", function()
      local lines = {}
      emu:fault{ path = "/echo/t", type = "status", status = 503,
                 headers = { ["Set-Cookie"] = "session=s3cr3t", ["X-Echo"] = KEY } }
      local c = client{ log = function(line) lines[#lines + 1] = line end }
      assert(c:get("/echo/t", { query = { token = KEY } }))
      assert.equal(4, #lines)
      assert.truthy(lines[1]:find("^bearer: > GET "))
      assert.truthy(lines[2]:find("^bearer: < 503"))
      assert.truthy(lines[4]:find("^bearer: < 200"))
      local all = table.concat(lines, "\n")
      assert.is_nil(all:find(KEY, 1, true))
      assert.is_nil(all:find("s3cr3t", 1, true))
      assert.truthy(all:find("Authorization: [REDACTED]", 1, true))
      assert.truthy(all:find("Set-Cookie: [REDACTED]", 1, true))
    end)

    it("redacts X-API-Key and Cookie headers too", function()
      local lines = {}
      local c = client{ auth = "x-api-key", log = function(line) lines[#lines + 1] = line end }
      assert(c:get("/echo/t", { headers = { Cookie = "a=b" } }))
      local all = table.concat(lines, "\n")
      assert.truthy(all:find("X-API-Key: [REDACTED]", 1, true))
      assert.truthy(all:find("Cookie: [REDACTED]", 1, true))
      assert.is_nil(all:find(KEY, 1, true))
    end)

    it("prints to stderr with BEARER_LOG=debug", function()
      local out, ok = subprocess.run(([[
        local bearer = require "bearer"
        local c = bearer.client{ base_url = %q, key = %q }
        assert(c:get("/echo/x"))
        local _, err = c:get("/echo/missing-key-" .. %q)
      ]]):format(emu.url, KEY, KEY), { BEARER_LOG = "debug" })
      assert.is_true(ok, out)
      assert.truthy(out:find("bearer: > GET", 1, true))
      assert.truthy(out:find("bearer: < 200", 1, true))
      assert.is_nil(out:find(KEY, 1, true))
      local quiet = subprocess.run(([[
        local c = require("bearer").client{ base_url = %q, key = %q }
        assert(c:get("/echo/x"))
      ]]):format(emu.url, KEY))
      assert.equal("", quiet)
    end)
  end)

  describe("options", function()
    it("raises for wrong option types and unknown options", function()
      local cases = {
        { { base_url = emu.url, timeout = "5" }, "timeout" },
        { { base_url = emu.url, timeout = -1 }, "timeout" },
        { { base_url = emu.url, connect_timeout = {} }, "connect_timeout" },
        { { base_url = emu.url, max_retries = -1 }, "max_retries" },
        { { base_url = emu.url, max_retries = 1.5 }, "max_retries" },
        { { base_url = emu.url, max_response_bytes = 0 }, "max_response_bytes" },
        { { base_url = emu.url, auth = "basic" }, "basic" },
        { { base_url = emu.url, key = 42 }, "key" },
        { { base_url = emu.url, headers = "x" }, "headers" },
        { { base_url = emu.url, sleep = 1 }, "sleep" },
        { { base_url = emu.url, timout = 1 }, "timout" },
        { { key = KEY }, "base_url" },
      }
      for _, case in ipairs(cases) do
        local ok, msg = pcall(bearer.client, case[1])
        assert.is_false(ok, case[2])
        assert.truthy(tostring(msg):find(case[2], 1, true), tostring(msg))
      end
      assert.has_error(function() bearer.client("x") end)
      local ok, err = pcall(bearer.client, { base_url = emu.url, key = "sk_live_bad" })
      assert.is_false(ok)
      assert.equal("invalid_key", err.code)
      local c = client()
      assert.has_error(function() c:request(1, "/x") end)
      assert.has_error(function() c:request("GET", nil) end)
      assert.has_error(function() c:request("GET", "/x", { nope = 1 }) end)
      assert.has_error(function() c:request("G T", "/x") end)
      -- a bad method name is the caller's argument, not an internal error
      for _, m in ipairs{ "G T", "", "GET\r\nX: y", "G(" } do
        local called, msg = pcall(c.request, c, m, "/x")
        assert.is_false(called)
        assert.truthy(tostring(msg):find("bad argument #1 to 'request' (HTTP method expected", 1, true),
                      tostring(msg))
      end
      assert.has_error(function() c:get("/x", { json = { f = function() end } }) end)
      -- a bad query value raises the same message, with the same position,
      -- whether it is the only parameter or one of several
      local function query_error(query)
        local called, msg = pcall(c.get, c, "/x", { query = query })
        assert.is_false(called)
        return tostring(msg)
      end
      local alone = query_error{ f = function() end }
      assert.truthy(alone:find("bad query parameter 'f' (string, number or boolean expected, "
                               .. "got function)", 1, true), alone)
      assert.equal(query_error{ f = function() end, a = 1 }, alone)
      assert.equal((query_error{ f = { 1, {} }, a = 1 }:gsub("table%)$", "function)")), alone)
      local h = core.client_new{}   -- the C transfer under every client
      assert.has_error(function() h:perform("GET", emu.url, {}, nil, { max_bytes = math.huge }) end)
      assert.has_error(function() h:perform("GET", emu.url, {}, nil, { max_bytes = 0 / 0 }) end)
    end)

    it("shows the key's prefix only", function()
      assert.equal("bearer.Client(sk_live_0123)", tostring(client()))
      assert.equal("bearer.Client(no key)", tostring(client{ key = false }))
      local c = client()
      c:close()
      assert.equal("bearer.Client(closed)", tostring(c))
    end)

    it("exposes one version", function()
      assert.equal(core._VERSION, bearer._VERSION)
      assert.truthy(bearer._VERSION:find("^%d+%.%d+%.%d+$"))
    end)
  end)
end)
