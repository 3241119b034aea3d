-- Issue 11: state shared between hosts through a real redis-server. Each
-- "host" is a separate process (a separate nginx in redis_nginx_spec).
local bearer = require "bearer"
local core = require "bearer.core"
local emulator = require "support.emulator"
local subprocess = require "support.subprocess"
local webhook = require "bearer.overten.webhook"

local SINCE = "2026-11-01T00:00:00Z"   -- 7 seeded Optiverse records from here on

-- A child process's lines "tag value" (ok 1, err <text>, rec <id>).
local function lines_of(out, tag)
  local got = {}
  for v in out:gmatch(tag .. " ([^\n]*)") do got[#got + 1] = v end
  return got
end

describe("bearer.redis #unit", function()
  local redis = require "bearer.redis"
  it("parses redis:// URLs and never shows the password", function()
    local a = assert(redis.parse("redis://:s3cret@127.0.0.1:6380/2"))
    assert.same({ "127.0.0.1", 6380, 2 }, { a.host, a.port, a.db })
    assert.equal("redis://127.0.0.1:6380/2", a.label)
    assert.same({ { "AUTH", "s3cret" }, { "SELECT", "2" } }, a.setup)
    assert.equal(6379, redis.parse("redis://localhost").port)
    local _, why = redis.parse("redis://:s3cret@bad host")
    assert.is_nil(why:find("s3cret", 1, true))
    assert.is_nil(redis.parse("http://127.0.0.1"))
  end)

  it("raises for a bad store option, at the caller", function()
    local ok, err = pcall(bearer.client, { base_url = "http://127.0.0.1:1",
      rate_limit = { requests = 1, per = 1, store = "http://127.0.0.1" } })
    assert.is_false(ok)
    assert.matches("bad option 'store' to 'client'", err)
    ok, err = pcall(bearer.client, { base_url = "http://127.0.0.1:1",
      rate_limit = { requests = 1, per = 1, store = "redis://127.0.0.1", on_store_error = "maybe" } })
    assert.is_false(ok)
    assert.matches("on_store_error", err)
    ok, err = pcall(webhook.verify, { secret = "whsec_x", body = "{}", replay = 42 })
    assert.is_false(ok)
    assert.matches("bad option 'replay' to 'verify'", err)
  end)

  it("parses replies with hiredis's reader, fed in pieces", function()
    local r = core.redis_reader()
    r:feed("*3\r\n$3\r\nabc\r\n:4")
    assert.is_false(r:get())
    r:feed("2\r\n$-1\r\n")
    local ok, v = r:get()
    assert.is_true(ok)
    assert.same({ "abc", 42, false }, v)
    r:feed("-NOSCRIPT no script\r\n")
    local ok2, none, msg = r:get()
    assert.is_true(ok2)
    assert.is_nil(none)
    assert.equal("NOSCRIPT no script", msg)
    r:feed("?garbage\r\n")
    local bad, err = r:get()
    assert.is_nil(bad)
    assert.equal("store_unavailable", err.code)
    assert.equal("*1\r\n$4\r\nPING\r\n", core.redis_format{ "PING" })
  end)
end)

describe("a core built without hiredis #integration", function()
  it("builds, runs, and makes a redis:// store a config error", function()
    local files = require "support.files"
    local dir = files.tmpdir()
    assert(os.execute(("mkdir -p %s/bearer && cc -O0 -std=c99 -fPIC -fvisibility=hidden "
      .. "-D_POSIX_C_SOURCE=200809L -I/usr/include/lua5.4 -shared -o %s/bearer/core.so "
      .. "%s/src/*.c -lcurl -lcrypto -lpthread"):format(dir, dir, emulator.ROOT)))
    local out = subprocess.run([[
      local bearer = require "bearer"
      print("redis", require("bearer.core").redis)
      local ok, e = pcall(bearer.client, { base_url = "http://127.0.0.1:1",
        rate_limit = { requests = 1, per = 1, store = "redis://127.0.0.1" } })
      print(ok, e.kind, e.code)
      print("plain", bearer.client{ base_url = "http://127.0.0.1:1", rate_limit = { requests = 1, per = 1 } } ~= nil)
    ]], { LUA_CPATH = dir .. "/?.so;;" })
    files.remove(dir)
    assert.matches("redis%sfalse", out)
    assert.matches("false%sconfig%sno_hiredis", out)
    assert.matches("plain%strue", out)
  end)
end)

describe("Redis stores #integration", function()
  local emu
  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() emu:reset() end)

  describe("shared through Redis", function()
    local server
    setup(function() server = require("support.redis").start() end)
    teardown(function() if server then server:stop() end end)

    -- Two processes, one key, one store: the emulator counts 8 per 2 s
    -- and answers 429 beyond; every call is a first attempt (max_retries 0).
    it("keeps two processes with one key under the API's limit", function()
      emu:config{ optiverse_poll_limit = { requests = 8, per = 2 } }
      local code = ([[
        local ov = require("bearer.optiverse").client{ api_key = %q, base_url = %q, max_retries = 0,
          rate_limit = { requests = 8, per = 2, store = %q } }
        for _ = 1, 10 do
          local page, err = ov:records_page{ limit = 1 }
          print(page and "ok 1" or ("err " .. tostring(err)))
        end
      ]]):format(emulator.OPTIVERSE_KEY, emu:optiverse_url(), server.url)
      local t0 = core.monotime()
      local a, b = subprocess.spawn(code), subprocess.spawn(code)
      local out = a.wait() .. b.wait()
      local elapsed = core.monotime() - t0
      assert.same({}, lines_of(out, "err"))
      assert.equal(20, #lines_of(out, "ok"), out)
      local times, most = emu:arrivals_under("/external-api/", 2)
      assert.equal(20, #times)
      assert.is_true(most <= 8, most .. " arrivals within 2 s")
      print(("\n    20 calls from 2 processes at 8 per 2 s: %.1f s, no 429"):format(elapsed))
    end)

    it("books on Redis's clock, expires its slots, and reloads its script after SCRIPT FLUSH", function()
      local store = require("bearer.redis").store(server.url, { name = "flush-test" })
      assert.equal(0, store:book(2, 10, 0.5))
      assert.equal(0, store:book(2, 10, 0.5))
      server:command{ "SCRIPT", "FLUSH" }
      local wait = store:book(2, 10, 0.5)
      assert.is_true(wait > 10 and wait <= 10.5, tostring(wait))
      local ttl = server:command{ "PTTL", "bearer:rl:flush-test" }
      -- kept while the last slot can matter: its start (10.5 s away) + per + margin + 2 s
      assert.is_true(ttl > 22000 and ttl <= 23000, tostring(ttl))
      assert.equal(2, server:command{ "LLEN", "bearer:rl:flush-test" })
    end)

    it("has three watchers in three processes share the slot and yield each record once", function()
      emu:config{ optiverse_poll_limit = { requests = 1, per = 1 } }
      local code = ([[
        local ov = require("bearer.optiverse").client{ api_key = %q, base_url = %q }
        local until_t = require("bearer.core").now() + 3.6
        local ok, err = pcall(function()
          for rec in ov:watch_records{ since = %q, interval = 1, i_have_a_higher_limit = true,
                                       max_failures = 0, until_time = until_t, store = %q } do
            print("rec " .. rec.recordId)
          end
        end)
        if not ok then print("err " .. tostring(err)) end
      ]]):format(emulator.OPTIVERSE_KEY, emu:optiverse_url(), SINCE, server.url)
      local watchers = { subprocess.spawn(code), subprocess.spawn(code), subprocess.spawn(code) }
      local inserted = {}
      for _ = 1, 2 do
        core.sleep(0.6)
        for _, id in ipairs(emu:control("POST", "/optiverse/records", { count = 2 }).inserted) do
          inserted[#inserted + 1] = id
        end
      end
      local outs = {}
      for i, w in ipairs(watchers) do outs[i] = w.wait() end   -- all done before any assert
      local seen, total, per_watcher = {}, 0, {}
      for i, out in ipairs(outs) do
        assert.same({}, lines_of(out, "err"))
        local recs = lines_of(out, "rec")
        per_watcher[i] = #recs
        for _, id in ipairs(recs) do
          assert.is_nil(seen[id], "record " .. id .. " yielded twice")
          seen[id] = true
          total = total + 1
        end
      end
      for _, id in ipairs(inserted) do assert.is_true(seen[id], "new record " .. id .. " never yielded") end
      assert.equal(7 + #inserted, total)
      print(("\n    3 watchers yielded %d, %d, %d of %d records"):format(per_watcher[1], per_watcher[2],
            per_watcher[3], total))
    end)

    it("refuses a webhook delivered twice, on the same host and on another", function()
      local secret = "whsec_test_replay"
      local body = '{"event":"task.completed","id":"evt_' .. math.random(1e9) .. '"}'
      local headers = webhook.sign{ secret = secret, body = body }
      local event, err = webhook.verify{ secret = secret, body = body, headers = headers, replay = server.url }
      assert.is_table(event, tostring(err))
      local again, rerr = webhook.verify{ secret = secret, body = body, headers = headers, replay = server.url }
      assert.is_nil(again)
      assert.equal("signature", rerr.kind)
      assert.equal("replayed", rerr.code)
      local out = subprocess.run(([[
        local w = require "bearer.overten.webhook"
        local ev, e = w.verify{ secret = %q, body = %q, headers = { ["X-Overten-Signature"] = %q,
                                ["X-Overten-Timestamp"] = %q }, replay = %q }
        print(ev and "accepted" or (e.kind .. "/" .. e.code))
      ]]):format(secret, body, headers["X-Overten-Signature"], headers["X-Overten-Timestamp"],
                 server.url))
      assert.matches("signature/replayed", out)
      -- another delivery is its own
      local body2 = body:gsub("}$", ',"n":2}')
      local other = webhook.sign{ secret = secret, body = body2 }
      assert.is_table((webhook.verify{ secret = secret, body = body2, headers = other, replay = server.url }))
      -- marks hold the signature (public), never the secret
      for _, k in ipairs(server:command{ "KEYS", "bearer:*" }) do
        assert.is_nil(k:find(secret, 1, true))
        assert.is_nil(k:find(emulator.OPTIVERSE_KEY, 1, true))
      end
    end)
  end)

  describe("when Redis fails", function()
    local server
    before_each(function() server = require("support.redis").start() end)
    after_each(function() if server then server:stop() end end)

    local function client(extra)
      local rl = { requests = 5, per = 1, store = server.url }
      for k, v in pairs(extra or {}) do rl[k] = v end
      return require("bearer.optiverse").client{ api_key = emulator.OPTIVERSE_KEY,
        base_url = emu:optiverse_url(), max_retries = 0, connect_timeout = 0.5, rate_limit = rl }
    end

    it("answers a connection error within the connect timeout when Redis hangs or is gone", function()
      local ov = client()
      assert.is_table((ov:records_page{ limit = 1 }))
      server:pause()   -- accepts, never answers
      local t0 = core.monotime()
      local page, err = ov:records_page{ limit = 1 }
      local hung = core.monotime() - t0
      assert.is_nil(page)
      assert.equal("connection", err.kind)
      assert.equal("store_unavailable", err.code)
      assert.is_true(hung < 1.5, ("%.2f s for a hung store (connect timeout 0.5 s)"):format(hung))
      server:stop()
      core.sleep(require("bearer.redis").DOWN_FOR)
      t0 = core.monotime()
      page, err = ov:records_page{ limit = 1 }
      assert.is_nil(page)
      assert.equal("store_unavailable", err.code)
      assert.is_true(core.monotime() - t0 < 1)
      assert.equal(1, emu:count_under("/external-api/"))   -- no request went out unlimited
      print(("\n    hung Redis: error after %.2f s (connect_timeout 0.5)"):format(hung))
    end)

    it("falls back to this host's limiter with on_store_error = 'local', saying so once", function()
      local out = subprocess.run(([[
        local core = require "bearer.core"
        local ov = require("bearer.optiverse").client{ api_key = %q, base_url = %q, max_retries = 0,
          connect_timeout = 0.5, rate_limit = { requests = 2, per = 0.5, store = %q,
                                                on_store_error = "local" } }
        print("first", ov:records_page{ limit = 1 } and "ok" or "failed")
        io.stdout:flush()
        os.execute("kill " .. %d)
        core.sleep(0.2)
        local t0 = core.monotime()
        for i = 1, 6 do
          local page, err = ov:records_page{ limit = 1 }
          print(page and "ok 1" or ("err " .. tostring(err)))
        end
        print(("elapsed %%.2f"):format(core.monotime() - t0))
      ]]):format(emulator.OPTIVERSE_KEY, emu:optiverse_url(), server.url, server.pid))
      server.pid = nil   -- the child stopped it
      assert.matches("first%sok", out)
      assert.same({}, lines_of(out, "err"))
      assert.equal(6, #lines_of(out, "ok"))
      local _, warnings = out:gsub("this host keeps the limit alone", "")
      assert.equal(1, warnings, out)
      -- 6 calls at 2 per 0.5 s on the local limiter: two full windows waited
      local elapsed = tonumber(out:match("elapsed (%S+)"))
      assert.is_true(elapsed >= 1, "the fallback did not limit: " .. elapsed)
    end)
  end)
end)
