local bearer = require "bearer"
local ratelimit = require "bearer.ratelimit"

-- A fake clock that sleep() advances: the spacing is checked, not waited.
local function fake_time(start)
  local t = { now = start or 1000, slept = {} }
  t.clock = function() return t.now end
  t.sleep = function(s) t.slept[#t.slept + 1] = s; t.now = t.now + s end
  return t
end

describe("bearer.ratelimit #unit", function()
  it("lets `requests` through per window, then spaces them", function()
    local t = fake_time()
    local lim = ratelimit.new{ requests = 2, per = 10, clock = t.clock, sleep = t.sleep }
    local starts = {}
    for _ = 1, 6 do
      lim:acquire()
      starts[#starts + 1] = t.now - 1000
    end
    -- spaced by per plus the margin (5 % of per, at most 1 s)
    assert.same({ 0, 0, 10.5, 10.5, 21, 21 }, starts)
    -- any window of 10 s holds at most 2 starts
    for i = 3, #starts do assert.is_true(starts[i] - starts[i - 2] >= 10) end
  end)

  it("does not wait when the caller was slower than the limit", function()
    local t = fake_time()
    local lim = ratelimit.new{ requests = 1, per = 180, clock = t.clock, sleep = t.sleep }
    lim:acquire()
    t.now = t.now + 500
    assert.equal(0, lim:acquire())
    t.now = t.now + 100
    assert.equal(81, lim:acquire())     -- 180 s and the 1 s margin after the last start
  end)

  it("books slots before sleeping, so concurrent callers keep the limit", function()
    local t = fake_time()
    local lim = ratelimit.new{ requests = 1, per = 180, clock = t.clock, sleep = t.sleep }
    -- three callers ask at the same instant (none has slept yet)
    assert.same({ 0, 181, 362 }, { lim:reserve(), lim:reserve(), lim:reserve() })
  end)

  it("raises for bad options", function()
    for _, bad in ipairs{ {}, { requests = 0, per = 1 }, { requests = 1.5, per = 1 },
                          { requests = 1, per = 0 }, { requests = 1, per = "3" },
                          { requests = 1, per = 1, sleep = 1 } } do
      assert.has_error(function() ratelimit.new(bad) end)
    end
    assert.has_error(function() ratelimit.new() end)
    assert.equal(ratelimit.new, bearer.ratelimit)
  end)
end)

describe("client rate_limit #integration", function()
  local emulator = require "support.emulator"
  local emu
  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)

  it("makes every call of the client wait its turn", function()
    local t = fake_time()
    local c = bearer.client{ base_url = emu.url, rate_limit = { requests = 1, per = 180 },
                             clock = t.clock, sleep = t.sleep }
    for _ = 1, 3 do assert(c:get("/echo/x")) end
    assert.same({ 181, 181 }, t.slept)
    assert.equal(3, #emu:requests("/echo/x"))
  end)

  it("counts retries against the limit too", function()
    emu:reset()
    emu:fault{ path = "/echo/r", type = "status", status = 503, retry_after = "1" }
    local t = fake_time()
    local c = bearer.client{ base_url = emu.url, rate_limit = { requests = 1, per = 60 },
                             clock = t.clock, sleep = t.sleep }
    assert(c:get("/echo/r"))
    -- Retry-After 1 s, then the limiter's remaining 59 s and its 1 s margin
    assert.same({ 1, 60 }, t.slept)
  end)

  it("accepts any object with acquire()", function()
    local calls = 0
    local c = bearer.client{ base_url = emu.url,
                             rate_limit = { acquire = function() calls = calls + 1 end } }
    assert(c:get("/echo/x"))
    assert.equal(1, calls)
    assert.has_error(function() bearer.client{ base_url = emu.url, rate_limit = 5 } end)
  end)
end)

describe("the limiter against the API's own count #integration", function()
  local emulator = require "support.emulator"
  local emu
  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)

  -- Issue 13: spaced exactly `per` apart, loopback jitter alone let the
  -- server see two arrivals closer than `per` about one run in five. With
  -- the margin, every call gets through on its first attempt.
  it("keeps 10 rounds of 3 calls under a real 1-per-second limit, no 429", function()
    emu:config{ optiverse_poll_limit = { requests = 1, per = 1 } }
    local ov = require("bearer.optiverse").client{ api_key = emulator.OPTIVERSE_KEY,
      base_url = emu:optiverse_url(), rate_limit = { requests = 1, per = 1 } }
    local function count() return emu:count_under("/external-api/") end
    for round = 1, 10 do
      local before = count()
      for call = 1, 3 do
        local page, err = ov:records_page{ limit = 1 }
        assert(page, ("round %d call %d: %s"):format(round, call, tostring(err)))
        assert.equal(1, bearer.response_of(page).attempts, ("round %d call %d"):format(round, call))
      end
      assert.equal(3, count() - before, "round " .. round)
    end
    ov:close()
  end)
end)
