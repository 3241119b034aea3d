-- The Lua layer's one rule of structure: bearer.core (the C handle, keys,
-- crypto) is required only by the files that implement the public client
-- surface and the hosts; every API module builds on that surface.
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$")) or "."

-- The surface (init, client, error, key, json: the core's JSON reader) and the hosts (plain, nginx's and the
-- code nginx's thread pool runs) with the ways they wait on the transfer
-- engine (the scheduler of plain Lua, nginx's engine socket), and the
-- stores hosts share through Redis (hiredis in the core: bearer.redis,
-- nginx's cosocket transport for it).
local MAY_REQUIRE_CORE = {
  ["lua/bearer/init.lua"] = true,
  ["lua/bearer/client.lua"] = true,
  ["lua/bearer/error.lua"] = true,
  ["lua/bearer/key.lua"] = true,
  ["lua/bearer/json.lua"] = true,
  ["lua/bearer/host.lua"] = true,
  ["lua/bearer/ngx/init.lua"] = true,
  ["lua/bearer/ngx/thread.lua"] = true,
  ["lua/bearer/scheduler.lua"] = true,
  ["lua/bearer/ngx/engine.lua"] = true,
  ["lua/bearer/redis.lua"] = true,
  ["lua/bearer/ngx/redis.lua"] = true,
}

local function lua_files()
  local out = {}
  for path in io.popen("cd " .. ROOT .. " && find lua -name '*.lua' | sort"):lines() do
    out[#out + 1] = path
  end
  return out
end

local function read(path)
  local f = assert(io.open(ROOT .. "/" .. path))
  local text = f:read("a")
  f:close()
  return text
end

describe("Lua layering #unit", function()
  it("keeps bearer.core to the client surface and the hosts", function()
    local offenders = {}
    for _, path in ipairs(lua_files()) do
      local text = read(path)
      if text:find("[\"']bearer%.core[\"']") and not MAY_REQUIRE_CORE[path] then
        offenders[#offenders + 1] = path
      end
    end
    assert.same({}, offenders)
  end)

  it("has no module reading the client's private state", function()
    for _, path in ipairs(lua_files()) do
      assert.is_nil(read(path):find("client_state", 1, true), path)
    end
  end)
end)
