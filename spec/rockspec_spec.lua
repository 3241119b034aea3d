-- The rockspec is the other way in (luarocks make): it must list every C
-- source and Lua module of the tree, and build a rock that loads on every
-- Lua Debian ships (5.1, 5.3, 5.4, LuaJIT), offline, with the commands the
-- README gives. Run alone: sh .ci/run-specs --tags=rock spec/rockspec_spec.lua
local files = require "support.files"

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

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns its combined output and whether it exited 0.
local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
  local out = p:read("a")
  return out, p:close() == true
end

-- What the child Lua runs against the rock: load it, make a key and a
-- client, and send one request to a loopback port nobody listens on.
local PROBE = [[
local bearer = require "bearer"
local core = require "bearer.core"
local key = bearer.key("sk_live_0123456789abcdefABCDEF012345", { scheme = "overten" })
local c = bearer.client{ base_url = "http://127.0.0.1:" .. arg[1], key = key, max_retries = 0 }
local res, err = c:get("/verify")
assert(require "bearer.overten" and require "bearer.optiverse")
io.write("lua=", core._LUA, "\n", "version=", bearer._VERSION, "\n",
         "core=", package.searchpath and package.searchpath("bearer.core", package.cpath) or "?", "\n",
         "res=", tostring(res), "\n", "error=", tostring(bearer.error.is(err)), "\n",
         "kind=", tostring(err and err.kind), "\n", "key=", tostring(key), "\n",
         "message=", tostring(err), "\n")
]]

-- A loopback port with nothing behind it, so connecting is refused at once
-- (bash's /dev/tcp, as spec/emulator/emulator checks ports).
local function closed_port()
  for _ = 1, 50 do
    local port = math.random(20000, 60000)
    if not os.execute(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d' 2>/dev/null"):format(port)) then
      return port
    end
  end
  error("no closed loopback port found")
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

  it("lists lua-cjson, the JSON codec bearer.json loads, as a dependency", function()
    local deps = table.concat(load_rockspec().dependencies, "\n")
    assert.truthy(deps:find("lua-cjson", 1, true), deps)
    local f = assert(io.open(ROOT .. "/lua/bearer/json.lua"))
    local text = f:read("a")
    f:close()
    assert.truthy(text:find('require, "cjson.safe"', 1, true))
  end)
end)

describe("the rock on every Lua #rock", function()
  local work, port

  setup(function()
    work = files.tmpdir()
    -- luarocks writes its .o files next to the sources: build from a copy.
    -- (bin/ and the emulator's server are installed by the rock too)
    assert(os.execute("cp -r " .. ROOT .. "/src " .. ROOT .. "/lua " .. ROOT .. "/bin " .. ROOT
                      .. "/bearer-scm-1.rockspec " .. work .. " && mkdir " .. work .. "/spec && cp -r "
                      .. ROOT .. "/spec/emulator " .. work .. "/spec/"))
    files.write(work .. "/probe.lua", PROBE)
    port = closed_port()
  end)
  teardown(function() files.remove(work) end)

  -- `luarocks [flags] make` into its own tree, offline (Debian's lua-cjson
  -- is no rock luarocks knows, hence --deps-mode=none); HOME keeps luarocks'
  -- cache out of the user's.
  local function build(name, flags, vars)
    local tree = work .. "/tree-" .. name
    local out, ok = sh(("cd %s && HOME=%s luarocks %s make --deps-mode=none --tree %s "
                        .. "bearer-scm-1.rockspec %s"):format(work, work, flags, tree, vars or ""))
    assert(ok, "luarocks " .. flags .. " make failed:\n" .. out)
    return tree
  end

  -- Runs the probe with `lua` against `tree` (its lib/lua/<abi>), the
  -- system's paths after it (Debian's lua-cjson); returns the fields.
  local function probe(lua, tree, abi)
    local vars = ("LUA_PATH=%s LUA_CPATH=%s"):format(
      quote(("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;"):format(tree, abi, tree, abi)),
      quote(("%s/lib/lua/%s/?.so;;"):format(tree, abi)))
    local out, ok = sh(("cd %s && %s %s probe.lua %d"):format(work, vars, lua, port))
    assert(ok, lua .. " could not use the rock:\n" .. out)
    local fields = {}
    for k, v in out:gmatch("(%w+)=([^\n]*)") do fields[k] = v end
    return fields, out
  end

  local function check(fields, out, lua_name, core_path)
    assert.equal(lua_name, fields.lua, out)
    assert.equal(require("bearer")._VERSION, fields.version, out)
    if fields.core ~= "?" then assert.equal(core_path, fields.core, out) end
    assert.equal("nil", fields.res, out)
    assert.equal("true", fields.error, out)
    assert.equal("connection", fields.kind, out)
    assert.truthy(fields.message:find("^bearer: connection error"), out)
    assert.is_nil(out:find("0123456789abcdefABCDEF012345", 1, true), "the key leaked:\n" .. out)
  end

  it("builds for the Lua luarocks picks by default, as the README says", function()
    local abi = sh("HOME=" .. work .. " luarocks config lua_version"):match("(%d%.%d)")
    assert.truthy(abi)
    local tree = build("default", "")
    local fields, out = probe("lua" .. abi, tree, abi)
    check(fields, out, "Lua " .. abi, tree .. "/lib/lua/" .. abi .. "/bearer/core.so")
  end)

  for _, v in ipairs{ "5.1", "5.3", "5.4" } do
    it("builds and loads with luarocks --lua-version=" .. v, function()
      local tree = build(v, "--lua-version=" .. v)
      local fields, out = probe("lua" .. v, tree, v)
      check(fields, out, "Lua " .. v, tree .. "/lib/lua/" .. v .. "/bearer/core.so")
      if v == "5.1" then
        -- LuaJIT speaks the 5.1 ABI: a 5.1 rock serves it too
        fields, out = probe("luajit", tree, v)
        check(fields, out, "Lua 5.1", tree .. "/lib/lua/5.1/bearer/core.so")
      end
    end)
  end

  it("builds for LuaJIT's own headers with LUA_INCDIR and loads in LuaJIT", function()
    local tree = build("luajit", "--lua-version=5.1", "LUA_INCDIR=/usr/include/luajit-2.1")
    local fields, out = probe("luajit", tree, "5.1")
    check(fields, out, "LuaJIT", tree .. "/lib/lua/5.1/bearer/core.so")
  end)

  it("a Lua 5.2 build stops at compile time, saying why", function()
    -- Debian's 5.4 headers, made to say 5.2: only compat.h's guard differs
    local inc = work .. "/lua5.2-inc"
    assert(os.execute(("mkdir -p %s && cp /usr/include/lua5.4/*.h %s && sed -i "
                       .. "'s/define LUA_VERSION_NUM\\s*504/define LUA_VERSION_NUM 502/' %s/lua.h")
                      :format(inc, inc, inc)))
    local out, ok = sh(("cd %s && cc -fsyntax-only -I%s src/core.c"):format(work, inc))
    assert.is_false(ok)
    assert.truthy(out:find("Lua 5.1, 5.3, 5.4 or LuaJIT 2.1 required "
                           .. "(Lua 5.2 and versions after 5.4 are not supported)", 1, true), out)
  end)
end)

describe("loading bearer with something missing #rock", function()
  local function run(lua, cpath)
    return sh(("cd %s && LUA_PATH=%s LUA_CPATH=%s %s -e 'require \"bearer\"'"):format(
      ROOT, quote("lua/?.lua;lua/?/init.lua"), quote(cpath), lua))
  end

  it("a missing lua-cjson is one line naming the package", function()
    local out, ok = run("lua5.4", "build/5.4/?.so")
    assert.is_false(ok)
    local first = out:match("^[^\n]*")
    assert.truthy(first:find("bearer: lua-cjson is not installed for Lua 5.4 "
                             .. "(Debian: apt-get install lua-cjson", 1, true), out)
    assert.is_nil(out:find("no file", 1, true), out)
  end)

  it("a core built for another Lua is named as such", function()
    local out, ok = run("luajit", "build/5.4/?.so;;")
    assert.is_false(ok)
    assert.truthy(out:find("build/5.4/bearer/core.so was built for Lua 5.4, not for LuaJIT "
                           .. "(undefined symbol ", 1, true), out)
  end)
end)
