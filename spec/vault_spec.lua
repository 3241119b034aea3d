-- The vault lends a key's bytes by number to a transfer in another Lua VM
-- of the same process (nginx worker threads); specs use one VM, same code.
local bearer = require "bearer"
local core = require "bearer.core"
local emulator = require "support.emulator"

-- A key put in the vault the way nginx's transport does it: by a client
-- handle's share_key; closing that handle is the holder letting go.
local function share(key)
  local holder = core.client_new{ key = key }
  return holder:share_key(), holder
end

describe("core vault #integration", function()
  local emu
  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() emu:reset() end)

  it("sends the vaulted key from a client that has none", function()
    local key = bearer.key(emulator.OVERTEN_KEY)
    local id, holder = share(key)
    key:close()   -- the vault holds its own copy
    local c = core.client_new{}
    local res = assert(c:perform("GET", emu.url .. "/echo/v", {}, nil, { vault = id }))
    assert.equal(200, res.status)
    assert.truthy(res.body:find("Bearer " .. emulator.OVERTEN_KEY, 1, true))
    -- no key of its own: nothing is sent without the vault
    res = assert(c:perform("GET", emu.url .. "/echo/v", {}, nil, {}))
    assert.is_nil(res.body:find("authorization", 1, true))
    holder:close()
    local none, err = c:perform("GET", emu.url .. "/echo/v", {}, nil, { vault = id })
    assert.is_nil(none)
    assert.equal("vault_missing", err.code)
  end)

  it("keeps the vaulted key out of traces and off plain http", function()
    local id, holder = share(bearer.key(emulator.OVERTEN_KEY))
    local c = core.client_new{}
    local res = assert(c:perform("GET", emu.url .. "/echo/t?k=" .. emulator.OVERTEN_KEY, {}, nil,
                                 { vault = id, trace = true }))
    assert.is_nil(res.trace_request:find(emulator.OVERTEN_KEY, 1, true))
    assert.truthy(res.trace_request:find("Authorization: [REDACTED]", 1, true))
    local _, err = core.client_new{ proxy = emu.url }
      :perform("GET", "http://api.example.com/x", {}, nil, { vault = id })
    assert.equal("insecure_transport", err.code)
    holder:close()
  end)

  it("never gives an id twice, so a stale id cannot reach another key", function()
    -- a call queued with a's id while its key changed must not find b's key
    local a, holder_a = share(bearer.key(emulator.OVERTEN_KEY))
    holder_a:close()
    local b, holder_b = share(bearer.key("optiuser_v1_someoneElsesKey1234567890"))
    assert.are_not.equal(a, b)
    local c0 = core.client_new{}
    local _, err = c0:perform("GET", emu.url .. "/echo/stale", {}, nil, { vault = a })
    assert.equal("vault_missing", err.code)
    assert.equal(0, #emu:requests())
    holder_b:close()
    holder_b:close()   -- a second drop is harmless
    local c = core.client_new{}
    assert.has_error(function() c:perform("GET", emu.url .. "/x", {}, nil, { vault = 0 }) end)
    assert.has_error(function() c:perform("GET", emu.url .. "/x", {}, nil, { vault = "1" }) end)
    _, err = c:perform("GET", emu.url .. "/x", {}, nil, { vault = 99999 })
    assert.equal("vault_missing", err.code)
  end)
end)
