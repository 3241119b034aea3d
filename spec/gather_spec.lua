-- bearer.gather (issue 9): concurrent SDK calls from plain Lua on the
-- transfer engine; every wait inside a task (transfer, retry backoff,
-- rate-limit slot) yields to the scheduler instead of blocking.
local bearer = require "bearer"
local emulator = require "support.emulator"

local function clock()
  return require("bearer.core").monotime()
end

describe("bearer.gather #integration", function()
  local emu

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() emu:reset() end)

  local function client(extra)
    local opts = { base_url = emu.url, key = bearer.key(emulator.OVERTEN_KEY), max_retries = 0 }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return bearer.client(opts)
  end

  it("overlaps 20 calls to a 0.5 s route and keeps their order", function()
    local c = client()
    emu:fault{ path = "/echo/slow*", type = "slow", delay = 0.5, times = -1 }
    local fns = {}
    for i = 1, 20 do
      fns[i] = function() return assert(c:get("/echo/slow" .. i)).json.path end
    end
    local t0 = clock()
    local values, errs = bearer.gather(fns)
    local took = clock() - t0
    assert.is_true(took < 1.5, ("20 calls took %.2f s"):format(took))
    for i = 1, 20 do
      assert.is_nil(errs[i])
      assert.equal("/echo/slow" .. i, values[i])
    end
    assert.equal(20, #emu:requests())
  end)

  it("puts a raising function and a failing call in errs; the others succeed", function()
    local c = client()
    emu:fault{ path = "/echo/fails", type = "status", status = 404 }
    local values, errs = bearer.gather{
      function() return assert(c:get("/echo/one")).status end,
      function() error({ mine = true }) end,
      function() return c:get("/echo/fails") end,
      function() error("plain message") end,
      function() return assert(c:get("/echo/four")).status end,
    }
    assert.equal(200, values[1])
    assert.equal(200, values[5])
    assert.same({ mine = true }, errs[2])
    assert.equal("not_found", errs[3].kind == "not_found" and "not_found" or errs[3].kind)
    assert.equal(404, errs[3].status)
    assert.matches("plain message", tostring(errs[4]))
    assert.is_nil(values[2])
    assert.is_nil(values[3])
    assert.is_nil(errs[1])
    assert.is_nil(errs[5])
  end)

  it("waits out a Retry-After inside a task without holding the others", function()
    local c = client{ max_retries = 1 }
    emu:fault{ path = "/echo/later", type = "status", status = 429, retry_after = 1 }
    emu:fault{ path = "/echo/quick*", type = "slow", delay = 0.2, times = -1 }
    local finished = {}
    local fns = {
      function()
        local res = assert(c:get("/echo/later"))
        finished[#finished + 1] = "later"
        return res.status
      end,
    }
    for i = 1, 4 do
      fns[#fns + 1] = function()
        local res = assert(c:get("/echo/quick" .. i))
        finished[#finished + 1] = "quick"
        return res.status
      end
    end
    local t0 = clock()
    local values = bearer.gather(fns)
    local took = clock() - t0
    for i = 1, 5 do assert.equal(200, values[i]) end
    assert.equal("later", finished[5], "the retried call finished last")
    assert.is_true(took >= 1 and took < 1.9, ("took %.2f s"):format(took))
  end)

  it("bounds the calls in flight by concurrency", function()
    local c = client()
    emu:fault{ path = "/echo/c*", type = "slow", delay = 0.3, times = -1 }
    local fns = {}
    for i = 1, 12 do fns[i] = function() return assert(c:get("/echo/c" .. i)).status end end
    local values = bearer.gather(fns, { concurrency = 4 })
    for i = 1, 12 do assert.equal(200, values[i]) end
    local seen = emu:requests()
    assert.equal(12, #seen)
    -- each call takes >= 0.3 s: calls that arrived within 0.25 s of each
    -- other were in flight together
    local most = 0
    for _, a in ipairs(seen) do
      local n = 0
      for _, b in ipairs(seen) do
        if b.time <= a.time and a.time - b.time < 0.25 then n = n + 1 end
      end
      most = math.max(most, n)
    end
    assert.is_true(most <= 4, most .. " calls in flight at once")
    assert.is_true(most >= 3, "the calls did overlap (" .. most .. ")")
  end)

  it("runs iterators and the Overten wait inside tasks", function()
    local op = require("bearer.optiverse").client{ api_key = emulator.OPTIVERSE_KEY,
                                                   base_url = emu:optiverse_url() }
    local ov = require("bearer.overten").client{ api_key = emulator.OVERTEN_KEY,
                                                 base_url = emu:overten_url() }
    local values, errs = bearer.gather({
      function() local n = 0; for _ in op:records{} do n = n + 1 end; return n end,
      function()
        local t = assert(ov:generate("excel", { prompt = "Q3", async = true }))
        emu:control("POST", "/overten/tasks/" .. t.task_id, { status = "completed" })
        return assert(ov:wait(t.task_id, { timeout = 10 })).status
      end,
      function() return assert(ov:verify()) ~= nil end,
    }, { concurrency = 3 })
    assert.is_nil(errs[1])
    assert.is_nil(errs[2])
    assert.is_true(values[1] > 0)
    assert.equal("completed", values[2])
    assert.is_true(values[3])
  end)

  it("refuses bad arguments", function()
    assert.has_error(function() bearer.gather("x") end)
    assert.has_error(function() bearer.gather({ 1 }) end)
    assert.has_error(function() bearer.gather({}, { concurrency = 0 }) end)
    assert.has_error(function() bearer.gather({}, { concurency = 2 }) end)
    local values, errs = bearer.gather({})
    assert.same({}, values)
    assert.same({}, errs)
  end)

  it("calls on_progress with growing counts and the total for an 8 MB download", function()
    local c = client()
    emu:fault{ path = "/echo/big", type = "huge", bytes = 8 * 1024 * 1024 }
    local dir = os.tmpname()
    os.remove(dir)
    local seen = {}
    local res = assert(c:get("/echo/big", { sink = dir, on_progress = function(done, total)
      seen[#seen + 1] = { done, total }
    end }))
    os.remove(dir)
    assert.equal(8 * 1024 * 1024, res.bytes)
    assert.is_true(#seen >= 1)
    local last = seen[#seen]
    assert.equal(8 * 1024 * 1024, last[1])
    assert.equal(8 * 1024 * 1024, last[2])
    for i = 2, #seen do assert.is_true(seen[i][1] >= seen[i - 1][1]) end
  end)
end)
