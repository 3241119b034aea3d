-- bearer's LuaJIT build (build/luajit) inside a real nginx with its Lua
-- module: it loads, makes a key, and the Lua 5.4 build is refused cleanly.
local bearer = require "bearer"
local core = require "bearer.core"
local emulator = require "support.emulator"

describe("bearer in nginx (LuaJIT) #integration", function()
  local server

  setup(function()
    server = emulator.start(nil, emulator.ROOT .. "/spec/nginx/smoke.conf.in")
  end)
  teardown(function() if server then server:stop() end end)

  it("loads the LuaJIT build and makes a key", function()
    local res = assert(server.http:get("/smoke"))
    assert.equal(200, res.status)
    local key, fingerprint, version, ok, code, jit =
      res.body:match("^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|\n]*)")
    assert.equal("bearer.Key(overten sk_live_0123...)", key)
    assert.equal(core.sha256_hex(emulator.OVERTEN_KEY), fingerprint)
    assert.equal(bearer._VERSION, version)
    assert.equal("false", ok)
    assert.equal("invalid_key", code)
    assert.truthy(jit:find("^LuaJIT"))
  end)

  it("refuses the Lua 5.4 build with a message, without crashing", function()
    local res = assert(server.http:get("/wrong-abi"))
    assert.equal(200, res.status)
    assert.truthy(res.body:find("^nil|"), res.body)
    assert.truthy(res.body:find("undefined symbol", 1, true), res.body)
    -- and require "bearer" says what to do about it
    assert.truthy(res.body:find("\nfalse|bearer: /", 1, true), res.body)
    assert.truthy(res.body:find("/build/5.4/bearer/core.so was built "
                                .. "for Lua 5.4, not for LuaJIT (undefined symbol ", 1, true), res.body)
    assert.truthy(res.body:find("build/luajit/", 1, true))
    -- the worker is still there
    assert.equal(200, assert(server.http:get("/smoke")).status)
  end)

  it("and Lua 5.4 refuses the LuaJIT build the same way", function()
    local subprocess = require "support.subprocess"
    local out = subprocess.run([[print(pcall(require, "bearer"))]],
                               { LUA_CPATH = emulator.ROOT .. "/build/luajit/?.so" })
    assert.truthy(out:find("false\tbearer: " .. emulator.ROOT .. "/build/luajit/bearer/core.so was built "
                           .. "for LuaJIT, not for Lua 5.4 (undefined symbol ", 1, true), out)
    assert.truthy(out:find("build/5.4", 1, true), out)
  end)

  it("logs no error", function()
    assert.same({}, server:error_lines())
  end)
end)
