-- Hostile servers and hostile input (issue 12): responses that crash
-- libcurl 7.88, header injection through options and multipart fields, the
-- loopback rule decided on the address, no key left in freed heap, and the
-- smaller rules of the transfer layer.
local bearer = require "bearer"
local core = require "bearer.core"
local emulator = require "support.emulator"

local KEY = emulator.OVERTEN_KEY

-- Each of these once made libcurl 7.88.1 double-free on a handle that had
-- already carried a response (curl issue 11101): a folded first header line,
-- bare CRs with a folded line, and folding after a valid header.
local MALFORMED = {
  folded_first = "HTTP/1.1 200 OK\n\tAccess-Control-Allow-Origin: *\n\tConnection: Keep-Alive\n"
    .. "Content-Type: text/html\nDate: Wed, 10 May 2023 14:58:08 GMT\n\n<html></html>",
  bare_cr = "HTTP/1.1 304 NM\rTransfer-Encoding:99999999999999999999\rContent-Type\r\n gzip\r\n"
    .. "Content-Length: 0\r\n\r\n",
  folded_later = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n continued\r\n"
    .. "Content-Length: 2\r\n\r\n{}",
  nul = "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\n{}",
}

describe("hardening #integration", function()
  local emu

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() emu:reset() end)

  describe("a malformed response on a reused connection", function()
    for name, bytes in pairs(MALFORMED) do
      it("gives a server error object and the client goes on (" .. name .. ")", function()
        local c = bearer.client{ base_url = emu.url, key = bearer.key(KEY), max_retries = 0,
                                 timeout = 5 }
        assert(c:get("/echo/before"))
        emu:fault{ path = "/echo/bad", type = "raw", bytes = bytes }
        local res, err = c:get("/echo/bad")
        assert.is_nil(res)
        assert.equal("server", err.kind)
        assert.equal("malformed_response", err.code)
        assert.is_false(err.retryable)
        local after = assert(c:get("/echo/after"))
        assert.equal(200, after.status)
        local seen = emu:requests()
        assert.equal(3, #seen)
        -- the malformed answer came on the kept-alive connection of the first
        assert.equal(seen[1].connection, seen[2].connection)
        assert.equal("raw", seen[2].fault)
        c:close()
      end)
    end
  end)

  describe("header injection", function()
    it("refuses CR, LF and NUL in user_agent", function()
      for _, ua in ipairs{ "ua\r\nX-Injected: yes", "ua\nX-Injected: yes", "ua\0x" } do
        local ok, msg = pcall(bearer.client, { base_url = emu.url, user_agent = ua })
        assert.is_false(ok)
        assert.matches("user_agent", tostring(msg))
        assert.matches("header injection", tostring(msg))
      end
      local c = bearer.client{ base_url = emu.url, user_agent = "mine/1.0" }
      local res = assert(c:get("/echo/ua"))
      assert.equal("mine/1.0", res.json.headers["user-agent"])
      c:close()
    end)

    it("refuses CR, LF and NUL in a multipart part's type, name and filename", function()
      local c = bearer.client{ base_url = emu.url, max_retries = 0 }
      for _, field in ipairs{ "type", "name", "filename" } do
        local part = { name = "f", value = "x", type = "text/plain", filename = "a.txt" }
        part[field] = "text/plain\r\nX-Injected: 1"
        local ok, msg = pcall(c.post, c, "/echo/form", { form = { part } })
        assert.is_false(ok, field)
        assert.matches("header injection", tostring(msg))
      end
      assert.equal(0, #emu:requests())
      c:close()
    end)

    it("refuses an injected content_type in Overten's upload", function()
      local ov = require("bearer.overten").client{ api_key = KEY, base_url = emu:overten_url(),
                                                   max_retries = 0 }
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write("hello")
      f:close()
      local ok, msg = pcall(ov.upload, ov, path, { content_type = "text/plain\r\nX-Injected: 1" })
      os.remove(path)
      assert.is_false(ok)
      assert.matches("header injection", tostring(msg))
      assert.equal(0, #emu:requests())
    end)
  end)

  describe("the loopback rule", function()
    it("refuses a host that only looks like a loopback address", function()
      local k = bearer.key(KEY)
      -- (libcurl itself reads 127.1 and 0x7f.0.0.1 as 127.0.0.1: those are loopback)
      for _, host in ipairs{ "127.0.0.99999", "127.0.0.1.example", "127.0.0.1.", "localhost.example",
                             "[::ffff:7f00:1]x" } do
        local c = bearer.client{ base_url = "http://" .. host .. ":9/api", key = k,
                                 max_retries = 0 }
        local res, err = c:get("/x")
        assert.is_nil(res, host)
        assert.equal("config", err.kind, host)
        assert.is_true(err.code == "insecure_transport" or err.code == "bad_url", host)
        assert.is_falsy(err.sent)
        c:close()
      end
    end)

    it("judges each URL by its own host after a call to a loopback origin", function()
      -- the C client remembers the origin it last checked; a URL that only
      -- begins like it must still be parsed and refused
      local h = core.client_new{ key = bearer.key(KEY) }
      assert(h:perform("GET", emu.url .. "/echo/first", {}, nil, {}))
      local origin = emu.url:match("^(http://[^/]+)")
      for _, url in ipairs{ origin .. ".example/x", origin .. "@example.org/x",
                            origin .. "\\@example.org/x", "HTTP" .. origin:sub(5) .. ".example/x" } do
        local res, err = h:perform("GET", url, {}, nil, {})
        assert.is_nil(res, url)
        assert.equal("config", err.kind, url)
        assert.is_true(err.code == "insecure_transport" or err.code == "bad_url", url)
      end
      -- a bad byte after the origin still gets libcurl's verdict on the URL
      local res, err = h:perform("GET", emu.url .. "/a b", {}, nil, {})
      assert.is_nil(res)
      assert.equal("bad_url", err.code)
      res = assert(h:perform("GET", emu.url .. "/echo/again?q=1", {}, nil, {}))
      assert.equal(200, res.status)
      assert.equal(2, #emu:requests())
      h:close()
    end)

    it("still sends the key to 127.0.0.1, localhost and an IPv4-mapped loopback", function()
      local port = emu.url:match(":(%d+)$")
      for _, host in ipairs{ "127.0.0.1", "localhost" } do
        local c = bearer.client{ base_url = "http://" .. host .. ":" .. port, key = bearer.key(KEY),
                                 max_retries = 0 }
        local res = assert(c:get("/echo/lo"))
        assert.equal(200, res.status)
        c:close()
      end
    end)
  end)

  it("leaves no copy of the credential line in freed heap after close", function()
    -- A child process: the key comes from the environment (never a Lua
    -- string there), 50 calls, close everything, then scan its own heap
    -- for the credential line. The search pattern does not match itself.
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
      package.cpath = %q .. "/build/5.4/?.so;" .. package.cpath
      local bearer = require "bearer"
      local key = assert(bearer.key.from_env("BEARER_HEAP_KEY", { scheme = "overten" }))
      local c = bearer.client{ base_url = %q, key = key, max_retries = 0 }
      for _ = 1, 50 do assert(c:get("/verify")) end
      c:close(); key:close(); c = nil; key = nil
      collectgarbage(); collectgarbage()
      local maps = {}
      for line in io.lines("/proc/self/maps") do
        local a, b, perms, rest = line:match("^(%%x+)-(%%x+) (%%S+) %%S+ %%S+ %%S+%%s*(.*)$")
        if perms:sub(1, 2) == "rw" and (rest == "" or rest == "[heap]") then
          maps[#maps + 1] = { tonumber(a, 16), tonumber(b, 16) }
        end
      end
      local mem = assert(io.open("/proc/self/mem", "rb"))
      local found, CHUNK = 0, 1 << 20
      for _, m in ipairs(maps) do
        local at = m[1]
        while at < m[2] do
          local n = math.min(CHUNK + 64, m[2] - at)
          mem:seek("set", at)
          local bytes = mem:read(n)
          if bytes then
            for _ in bytes:sub(1, CHUNK + 63):gmatch("[Bb]eare[r] sk_live_") do found = found + 1 end
          end
          at = at + CHUNK
        end
      end
      print("copies=" .. found)
      print("wipes=" .. tostring(require("bearer.core").curl_wipes_memory))
    ]]):format(emulator.ROOT, emulator.ROOT, emulator.ROOT, emu:overten_url()))
    f:close()
    local p = assert(io.popen("BEARER_HEAP_KEY=" .. KEY .. " lua5.4 " .. script .. " 2>&1"))
    local out = p:read("a")
    p:close()
    os.remove(script)
    assert.matches("wipes=true", out)
    assert.equal("0", out:match("copies=(%d+)"), out)
    assert.equal(50, #emu:requests("/api/v1/verify"))
  end)

  describe("smaller rules", function()
    it("reports oversized response headers as too_large", function()
      local c = bearer.client{ base_url = emu.url, max_retries = 0 }
      local headers = {}
      for i = 1, 40 do headers[#headers + 1] = ("X-Big-%d: %s\r\n"):format(i, ("h"):rep(8000)) end
      emu:fault{ path = "/echo/bighead", type = "raw",
                 bytes = "HTTP/1.1 200 OK\r\n" .. table.concat(headers) .. "Content-Length: 0\r\n\r\n" }
      local res, err = c:get("/echo/bighead")
      assert.is_nil(res)
      assert.equal("too_large", err.kind)
      assert.equal("response_too_large", err.code)
      -- one line past libcurl's own per-line limit
      emu:fault{ path = "/echo/bigline", type = "raw", bytes = "HTTP/1.1 200 OK\r\nX-Big: "
                 .. ("a"):rep(150000) .. "\r\nContent-Length: 0\r\n\r\n" }
      res, err = c:get("/echo/bigline")
      assert.is_nil(res)
      assert.equal("too_large", err.kind)
      c:close()
    end)

    it("answers a status past three digits with an error object", function()
      local c = bearer.client{ base_url = emu.url, max_retries = 0 }
      for _, line in ipairs{ "HTTP/1.1 25112 OK", "HTTP/1.1 1000 X", "HTTP/1.1 099 X" } do
        emu:fault{ path = "/echo/st", type = "raw", bytes = line .. "\r\nContent-Length: 0\r\n\r\n" }
        local res, err = c:get("/echo/st")
        assert.is_nil(res, line)
        assert.equal("server", err.kind, line)
        assert.equal("malformed_response", err.code, line)
      end
      c:close()
    end)

    it("redacts an echoed key in an error's code and request id", function()
      local k = bearer.key(KEY)
      local c = bearer.client{ base_url = emu.url, key = k, max_retries = 0 }
      emu:fault{ path = "/echo/code", type = "status", status = 400,
                 body = '{"error":{"code":"' .. KEY .. '","message":"bad"},"detail":"x"}',
                 headers = { ["X-Request-Id"] = "req-" .. KEY } }
      local _, err = c:get("/echo/code")
      assert.is_nil(tostring(err):find(KEY, 1, true))
      assert.is_nil(tostring(err.code):find(KEY, 1, true))
      assert.is_nil(tostring(err.request_id):find(KEY, 1, true))
      c:close()
    end)

    it("joins many repeats of a header in order", function()
      local c = bearer.client{ base_url = emu.url, max_retries = 0 }
      local lines, want = {}, {}
      for i = 1, 3000 do
        lines[#lines + 1] = "X-Rep: v" .. i .. "\r\n"
        want[#want + 1] = "v" .. i
      end
      emu:fault{ path = "/echo/rep", type = "raw",
                 bytes = "HTTP/1.1 200 OK\r\nX-One: 1\r\n" .. table.concat(lines)
                   .. "X-Two: a\r\nx-two: b\r\nContent-Length: 0\r\n\r\n" }
      local res = assert(c:get("/echo/rep"))
      assert.equal(table.concat(want, ", "), res.headers["x-rep"])
      assert.equal("1", res.headers["x-one"])
      assert.equal("a, b", res.headers["x-two"])
      c:close()
    end)

    it("redacts a key placed percent-encoded in a query from trace lines", function()
      local k = bearer.key("tok+en/with=signs_0123456789", { scheme = "token" })
      local redacted = core.redact("GET /x?k=tok%2Ben%2Fwith%3Dsigns_0123456789&b=1 and "
        .. "tok%2ben%2fwith%3dsigns_0123456789 and tok+en%2Fwith=signs_0123456789", k)
      assert.equal("GET /x?k=[REDACTED]&b=1 and [REDACTED] and [REDACTED]", redacted)
      -- and through a real traced call
      local lines = {}
      local c = bearer.client{ base_url = emu.url, key = k, max_retries = 0,
                               log = function(line) lines[#lines + 1] = line end }
      assert(c:get("/echo/q", { query = { k = "tok+en/with=signs_0123456789" } }))
      local text = table.concat(lines, "\n")
      assert.matches("[REDACTED]", text, 1, true)
      assert.is_nil(text:find("tok%2Ben", 1, true))
      assert.is_nil(text:find("tok+en", 1, true))
      c:close()
    end)
  end)
end)
