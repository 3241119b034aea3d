-- The rockspec is the other way in (luarocks make): it must list every C
-- source and Lua module of the tree, and build a working rock offline.
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$")) or "."

local function load_rockspec()
  local env = {}
  local chunk = assert(loadfile(ROOT .. "/bearer-scm-1.rockspec", "t", env))
  chunk()
  return env
end

local function listing(cmd)
  local out = {}
  for line in io.popen(cmd):lines() do out[#out + 1] = line end
  table.sort(out)
  return out
end

describe("bearer-scm-1.rockspec #unit", function()
  it("lists every C source and every Lua module", function()
    local spec = load_rockspec()
    local sources = spec.build.modules["bearer.core"].sources
    table.sort(sources)
    assert.same(listing("cd " .. ROOT .. " && ls src/*.c"), sources)
    local lua = {}
    for name, path in pairs(spec.build.modules) do
      if type(path) == "string" then
        lua[#lua + 1] = path
        local expect = path:gsub("^lua/", ""):gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
        assert.equal(expect, name)
      end
    end
    table.sort(lua)
    assert.same(listing("cd " .. ROOT .. " && find lua -name '*.lua'"), lua)
  end)

  it("builds and loads with luarocks make, offline", function()
    local work = os.tmpname()
    os.remove(work)
    local cmd = table.concat({
      "mkdir -p " .. work,
      "cp -r " .. ROOT .. "/src " .. ROOT .. "/lua " .. ROOT .. "/bearer-scm-1.rockspec " .. work,
      "cd " .. work,
      "HOME=" .. work .. " luarocks --lua-version=5.4 make --tree " .. work .. "/tree bearer-scm-1.rockspec >build.log 2>&1",
      "lua5.4 -e 'package.path=\"" .. work .. "/tree/share/lua/5.4/?.lua;" .. work
        .. "/tree/share/lua/5.4/?/init.lua;\"..package.path; package.cpath=\"" .. work
        .. "/tree/lib/lua/5.4/?.so;\"..package.cpath; local b = require \"bearer\";"
        .. " io.write(b._VERSION, \" \", package.searchpath(\"bearer.core\", package.cpath))'",
    }, " && ")
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("a")
    local ok = p:close()
    local log = io.open(work .. "/build.log")
    local build = log and log:read("a") or ""
    if log then log:close() end
    os.execute("rm -rf " .. work)
    assert.is_true(ok, out .. "\n" .. build)
    assert.truthy(out:find(require("bearer")._VERSION .. " " .. work .. "/tree/lib/lua/5.4/bearer/core.so", 1, true), out)
  end)
end)
