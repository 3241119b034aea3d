-- bearer.emulator and `bearer emulator` as a user meets them: start on a
-- free loopback port, drive (faults, config, reset, the request log),
-- stop by pid; a clear error when nginx's Lua module is missing; the
-- guide's example spec; and the same from a tree `luarocks make` installed.
local product = require "bearer.emulator"
local overten = require "bearer.overten"
local files = require "support.files"

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$")) or "."
ROOT = ROOT:sub(1, 1) == "/" and ROOT or io.popen("cd " .. ROOT .. " && pwd"):read("l")

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

local function port_open(url)
  local port = url:match(":(%d+)$")
  return os.execute(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%s' 2>/dev/null"):format(port)) == true
end

describe("bearer.emulator #integration", function()
  it("starts, serves both APIs with its seeded keys, and stops by pid", function()
    local emu = assert(product.start())
    assert.truthy(emu.url:find("^http://127%.0%.0%.1:%d+$"), emu.url)
    assert.same({ ok = true }, assert(emu:health()))
    local env = emu:env()
    assert.equal(emu:overten_url(), env.OVERTEN_BASE_URL)
    assert.equal(product.OPTIVERSE_KEY, env.OPTIVERSE_API_KEY)
    local c = overten.client{ api_key = product.OVERTEN_KEY, base_url = emu:overten_url(), max_retries = 0 }
    assert.equal("org_test", assert(c:verify()).org_id)

    -- faults, the request log, config, reset
    assert(emu:fault{ path = "/api/v1/verify", type = "status", status = 503 })
    assert.equal(1, #assert(emu:faults()))
    local doc, err = c:verify()
    assert.is_nil(doc)
    assert.equal(503, err.status)
    assert.equal(2, #assert(emu:requests("/api/v1/verify")))
    assert.equal(2, emu:count_under("/api/v1/"))
    assert(emu:config{ sync_ceiling = 5 })
    assert.equal(5, assert(emu:config()).sync_ceiling)
    assert.equal(3, #assert(emu:insert_records(3)).inserted)
    assert(emu:reset())
    assert.same({}, assert(emu:requests()))
    assert.same({}, assert(emu:faults()))
    assert.is_nil(next(assert(emu:config())))
    c:close()

    local prefix = emu.prefix
    assert.is_true(assert(emu:stop()))
    assert.is_false(port_open(emu.url))
    assert.is_nil(io.open(prefix .. "/nginx.conf"))
    doc, err = emu:health()
    assert.is_nil(doc)
    assert.equal("config", err.kind)
  end)

  it("says what to install when nginx's Lua module is missing", function()
    local saved = product.NGINX_LUA_MODULE
    product.NGINX_LUA_MODULE = "/nonexistent/ngx_http_lua_module.so"
    local emu, err = product.start()
    product.NGINX_LUA_MODULE = saved
    assert.is_nil(emu)
    assert.equal("config", err.kind)
    assert.equal("emulator_needs_lua_module", err.code)
    assert.truthy(tostring(err):find("apt-get install nginx libnginx-mod-http-lua", 1, true), tostring(err))
  end)

  it("refuses a bad option as a caller mistake", function()
    assert.has_error(function() product.start{ port = "x" } end,
                     "bad option 'port' to 'start' (whole number expected, got x)")
    assert.has_error(function() product.start("x") end,
                     "bad argument #1 to 'start' (table expected, got string)")
  end)

  it("docs/testing.md shows the example's code as it is in examples/testing", function()
    local code = files.read(ROOT .. "/examples/testing/monthly.lua")
                 .. files.read(ROOT .. "/examples/testing/monthly_spec.lua")
    local guide = files.read(ROOT .. "/docs/testing.md")
    local blocks = 0
    for block in guide:gmatch("```lua\n(.-)```") do
      blocks = blocks + 1
      for line in block:gmatch("[^\n]+") do
        assert.truthy(code:find(line, 1, true), "not in examples/testing: " .. line)
      end
    end
    assert.equal(2, blocks)
  end)

  it("runs docs/testing.md's example spec (examples/testing)", function()
    local out, ok = sh(("cd %s && LUA_PATH=%s LUA_CPATH=%s busted --lua=lua5.4 -o plainTerminal "
                        .. "examples/testing/monthly_spec.lua"):format(quote(ROOT),
      quote("lua/?.lua;lua/?/init.lua;examples/testing/?.lua;;"), quote("build/5.4/?.so;;")))
    assert.is_true(ok, out)
    assert.truthy(out:find("3 successes / 0 failures / 0 errors", 1, true), out)
  end)
end)

describe("bearer emulator start|status|reset|stop #integration", function()
  it("prints the export lines a shell evals, and stops what it started", function()
    local bin = quote(ROOT .. "/bin/bearer")
    local script = ([[
      set -e
      unset OVERTEN_API_KEY OVERTEN_BASE_URL OPTIVERSE_API_KEY OPTIVERSE_BASE_URL
      eval "$(%s emulator start)"
      echo "PREFIX=$BEARER_EMULATOR_PREFIX"
      %s overten verify
      %s emulator status
      %s emulator reset
      %s emulator stop
      if %s emulator status; then echo STILL_UP; fi
    ]]):format(bin, bin, bin, bin, bin, bin)
    local out = sh("env -u LUA_PATH -u LUA_CPATH bash -c " .. quote(script))
    local prefix = out:match("PREFIX=(%S+)")
    assert.truthy(prefix, out)
    assert.truthy(out:find('"org_id":"org_test"', 1, true), out)
    assert.truthy(out:find('{"ok":true,"url":"http://127.0.0.1:', 1, true), out)
    assert.is_nil(out:find("STILL_UP", 1, true), out)
    assert.truthy(out:find("bearer: connection error", 1, true), out)
    assert.is_nil(io.open(prefix .. "/nginx.conf"))
  end)

  it("exits 2 for stop without a prefix", function()
    local out, ok = sh("env -u BEARER_EMULATOR_PREFIX " .. quote(ROOT .. "/bin/bearer") .. " emulator stop")
    assert.is_false(ok)
    assert.truthy(out:find("BEARER_EMULATOR_PREFIX", 1, true), out)
  end)
end)

describe("the installed rock's bearer and bearer.emulator #rock", function()
  local work

  setup(function() work = files.tmpdir() end)
  teardown(function() files.remove(work) end)

  it("start the emulator from its installed files and use it", function()
    -- luarocks writes its .o files next to the sources: build from a copy
    assert(os.execute(("cd %s && cp -r src lua bin bearer-scm-1.rockspec %s && mkdir %s/spec "
                       .. "&& cp -r spec/emulator %s/spec/"):format(quote(ROOT), work, work, work)))
    local tree = work .. "/tree"
    local out, ok = sh(("cd %s && HOME=%s luarocks --lua-version=5.4 make --deps-mode=none --tree %s "
                        .. "bearer-scm-1.rockspec"):format(work, work, tree))
    assert.is_true(ok, out)
    -- what `luarocks path --tree` gives a user, then the rock's command
    local script = ([[
      set -e
      cd /
      export LUA_PATH='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;;'
      export LUA_CPATH='%s/lib/lua/5.4/?.so;;'
      lua5.4 -e 'print("DIR=" .. require("bearer.emulator").DIR)'
      eval "$(%s/bin/bearer emulator start)"
      %s/bin/bearer overten runs --max 2
      %s/bin/bearer emulator stop
    ]]):format(tree, tree, tree, tree, tree, tree)
    out, ok = sh("bash -c " .. quote(script))
    assert.is_true(ok, out)
    assert.truthy(out:find("DIR=" .. tree .. "/share/lua/5.4/bearer/emulator/server", 1, true), out)
    local runs = 0
    for line in out:gmatch('{[^\n]*"run_id"[^\n]*}') do
      assert.truthy(line:find('"run_id":"run_', 1, true))
      runs = runs + 1
    end
    assert.equal(2, runs, out)
  end)
end)
