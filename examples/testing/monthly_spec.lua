-- docs/testing.md's example: a user's busted spec of their own code
-- (monthly.lua) against the emulator bearer installs. Run it with
--   busted --lua=lua5.4 examples/testing/monthly_spec.lua
local emulator = require "bearer.emulator"
local overten = require "bearer.overten"
local optiverse = require "bearer.optiverse"
local monthly = require "monthly"

describe("monthly", function()
  local emu, ot, ov

  setup(function()
    emu = assert(emulator.start())          -- nginx on a free 127.0.0.1 port
    ot = overten.client{ api_key = emulator.OVERTEN_KEY, base_url = emu:overten_url() }
    ov = optiverse.client{ api_key = emulator.OPTIVERSE_KEY, base_url = emu:optiverse_url(),
                           max_retries = 0 }
  end)
  teardown(function()
    ot:close()
    ov:close()
    emu:stop()                              -- by pid; its temp directory removed
  end)
  before_each(function() assert(emu:reset()) end)   -- seeded data, no faults

  it("counts the completed Word runs", function()
    assert.is_true(monthly.completed_word_runs(ot) > 0)
    -- and asked the API with both filters
    local seen = assert(emu:requests("/api/v1/runs"))
    assert.truthy(seen[1].query:find("format=word", 1, true))
  end)

  it("lists a month of meetings", function()
    local titles = assert(monthly.meeting_titles(ov, "2026-11-01", "2026-11-30"))
    assert.is_true(#titles > 0)
  end)

  it("reports an outage as an error object", function()
    assert(emu:fault{ path = "/external-api/*", type = "status", status = 503, times = -1 })
    local titles, err = monthly.meeting_titles(ov, "2026-11-01", "2026-11-30")
    assert.is_nil(titles)
    assert.equal("server", err.kind)
    assert.equal(503, err.status)
  end)
end)
