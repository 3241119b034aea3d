-- The vault lends a key's bytes by number to a transfer in another Lua VM
-- of the same process (nginx worker threads); specs use one VM, same code.
local bearer = require "bearer"
local core = require "bearer.core"
local emulator = require "support.emulator"

describe("core vault #integration", function()
  local emu
  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() emu:reset() end)

  it("sends the vaulted key from a client that has none", function()
    local key = bearer.key(emulator.OVERTEN_KEY)
    local id = core.vault_put(key)
    key:close()   -- the vault holds its own copy
    local c = core.client_new{}
    local res = assert(c:perform("GET", emu.url .. "/echo/v", {}, nil, { vault = id }))
    assert.equal(200, res.status)
    assert.truthy(res.body:find("Bearer " .. emulator.OVERTEN_KEY, 1, true))
    -- no key of its own: nothing is sent without the vault
    res = assert(c:perform("GET", emu.url .. "/echo/v", {}, nil, {}))
    assert.is_nil(res.body:find("authorization", 1, true))
    core.vault_drop(id)
    local none, err = c:perform("GET", emu.url .. "/echo/v", {}, nil, { vault = id })
    assert.is_nil(none)
    assert.equal("vault_missing", err.code)
  end)

  it("keeps the vaulted key out of traces and off plain http", function()
    local id = core.vault_put(bearer.key(emulator.OVERTEN_KEY))
    local c = core.client_new{}
    local res = assert(c:perform("GET", emu.url .. "/echo/t?k=" .. emulator.OVERTEN_KEY, {}, nil,
                                 { vault = id, trace = true }))
    assert.is_nil(res.trace_request:find(emulator.OVERTEN_KEY, 1, true))
    assert.truthy(res.trace_request:find("Authorization: [REDACTED]", 1, true))
    local _, err = core.client_new{ proxy = emu.url }
      :perform("GET", "http://api.example.com/x", {}, nil, { vault = id })
    assert.equal("insecure_transport", err.code)
    core.vault_drop(id)
  end)

  it("never gives an id twice, so a stale id cannot reach another key", function()
    -- a call queued with a's id while its key changed must not find b's key
    local a = core.vault_put(bearer.key(emulator.OVERTEN_KEY))
    core.vault_drop(a)
    local b = core.vault_put(bearer.key("optiuser_v1_someoneElsesKey1234567890"))
    assert.are_not.equal(a, b)
    local c0 = core.client_new{}
    local _, err = c0:perform("GET", emu.url .. "/echo/stale", {}, nil, { vault = a })
    assert.equal("vault_missing", err.code)
    assert.equal(0, #emu:requests())
    core.vault_drop(b)
    core.vault_drop(b)   -- a second drop is harmless
    local k = bearer.key(emulator.OVERTEN_KEY)
    local c = core.client_new{}
    assert.has_error(function() c:perform("GET", emu.url .. "/x", {}, nil, { vault = 0 }) end)
    assert.has_error(function() c:perform("GET", emu.url .. "/x", {}, nil, { vault = "1" }) end)
    local _, err = c:perform("GET", emu.url .. "/x", {}, nil, { vault = 99999 })
    assert.equal("vault_missing", err.code)
  end)
end)
