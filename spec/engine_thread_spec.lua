-- The transfer engine in its threaded mode (what every nginx worker runs,
-- core.engine_thread()), driven from plain Lua: the engine's thread and
-- the caller's thread share transfers, and these specs aim at the moments
-- where ownership passes between them. Each runs in a child process: a
-- state's engine stays threaded for good, and a crash must not take the
-- spec runner with it.
local emulator = require "support.emulator"
local subprocess = require "support.subprocess"

-- Runs code in a child after making its engine threaded; `core` and a
-- key-less raw client `c` are in scope. Returns its output and whether it
-- exited cleanly.
local function threaded(code)
  return subprocess.run([[
    local core = require "bearer.core"
    core.engine_thread()
    local c = core.client_new{}
  ]] .. code)
end

describe("the threaded transfer engine #integration", function()
  local emu

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() emu:reset() end)

  -- Nothing listens on port 1: the engine thread fails each transfer
  -- within microseconds, often before perform() starts waiting for it,
  -- which once made perform read the engine from a transfer already
  -- taken off it (a NULL engine: signal 11 in nginx's fork spec).
  it("finishes blocking calls whose transfers end before the caller waits", function()
    local out, ok = threaded([[
      local codes = {}
      for _ = 1, 1000 do
        local res, err = c:perform("GET", "http://127.0.0.1:1/x")
        local code = res and "ok" or err.code
        codes[code] = (codes[code] or 0) + 1
      end
      print("connect_failed=" .. tostring(codes.connect_failed))
    ]])
    assert.is_true(ok, out)
    assert.matches("connect_failed=1000", out, 1, true)
  end)

  -- A signal for the process (nginx's QUIT, HUP, USR1 when sent by kill,
  -- SIGCHLD, SIGALRM) must run its handler on the thread running nginx's
  -- event loop, never on the engine's.
  it("starts its thread with the process's signals blocked", function()
    local out, ok = threaded([[
      local pid = io.open("/proc/self/stat"):read("n")
      local p = io.popen("cat /proc/" .. pid .. "/task/*/status")
      local text = p:read("a")
      p:close()
      for status in text:gmatch("Name:.-\nSigCgt:[^\n]*") do
        if tonumber(status:match("\nPid:%s*(%d+)")) ~= pid then
          print("engine thread blocks " .. status:match("\nSigBlk:%s*(%x+)"))
        end
      end
    ]])
    assert.is_true(ok, out)
    local mask = out:match("engine thread blocks (%x+)")
    assert.is_string(mask, out)
    local low = tonumber(mask:sub(-8), 16)
    for _, sig in ipairs{ 1, 2, 3, 10, 12, 13, 14, 15, 17, 28, 29 } do
      assert.is_true(low & (1 << (sig - 1)) ~= 0, ("signal %d is not blocked (SigBlk %s)"):format(sig, mask))
    end
  end)

  it("aborts a running transfer on close() and frees it once the engine lets go", function()
    emu:fault{ path = "/echo/slow*", type = "slow", delay = 5, times = -1 }
    local out, ok = threaded(([[
      local e = core.engine()
      local ts = {}
      for i = 1, 20 do ts[i] = assert(c:start("GET", %q .. "/echo/slow" .. i)) end
      core.sleep(0.2)
      local t0 = core.monotime()
      for i = 1, 20 do ts[i]:close() end
      ts = nil
      local running
      repeat
        require("bearer.core").sleep(0.01)
        local _; _, running = e:step()
      until running == 0 or core.monotime() - t0 > 3
      collectgarbage()
      collectgarbage()
      print(("running=%%d after=%%.2f"):format(running, core.monotime() - t0))
    ]]):format(emu.url))
    assert.is_true(ok, out)
    local running, after = out:match("running=(%d+) after=([%d.]+)")
    assert.equal("0", running, out)
    assert.is_true(tonumber(after) < 1, "the aborts took " .. tostring(after) .. " s")
  end)

  -- Transfers closed while the engine thread may be finishing them, and
  -- a state closed (a worker exiting) with transfers still in flight: its
  -- transfers and its engine are finalised in whatever order the
  -- collector picks, while the engine thread still runs them.
  it("closes transfers as they finish, and the state with transfers in flight", function()
    emu:fault{ path = "/echo/inflight*", type = "slow", delay = 5, times = -1 }
    local out, ok = threaded(([[
      -- port 1 fails at once: close() lands, a little later each time,
      -- around the moment the engine thread finishes the transfer
      -- (a form's parts make the engine's clean-up, and so that moment, longer)
      local form = {}
      for k = 1, 20 do form[k] = { name = "p" .. k, value = "v" } end
      for i = 1, 6000 do
        local t
        if i %% 2 == 0 then
          t = assert(c:start("GET", "http://127.0.0.1:1/x"))
          for _ = 1, (i %% 64) * 25 * (1 + i %% 4) do end
        else
          t = assert(c:start("POST", "http://127.0.0.1:1/x", nil, nil, { form = form }))
          for _ = 1, (i %% 64) * 10 do end
        end
        t:close()
        if i %% 200 == 0 then core.engine():step(); collectgarbage() end
      end
      local keep = {}
      for i = 1, 20 do keep[i] = assert(c:start("GET", %q .. "/echo/inflight" .. i)) end
      core.sleep(0.3)
      print("closing with " .. select(2, core.engine():step()) .. " running")
      os.exit(0, true)
    ]]):format(emu.url))
    assert.is_true(ok, out)
    assert.matches("closing with 20 running", out, 1, true)
  end)

  -- A worker killed by a signal cannot remove its engine's socket
  -- directory; the next engine thread of the same user removes it, and
  -- leaves a living process's and anything that is not an engine's.
  it("removes the socket directory a killed process left behind", function()
    local tmp = os.tmpname()
    os.remove(tmp)
    assert(os.execute("mkdir -m 700 " .. tmp))
    local function entries()
      local list, p = {}, io.popen("ls -A " .. tmp)
      for name in p:lines() do list[#list + 1] = name end
      p:close()
      table.sort(list)
      return list
    end
    local killed = subprocess.run([[
      local core = require "bearer.core"
      print(core.engine_thread())
      io.stdout:flush()
      os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n"))
    ]], { TMPDIR = tmp })
    local left = assert(killed:match("(bearer%-engine%-%d+%-%w+)/engine%.sock"), killed)
    assert.same({ left }, entries())
    -- not an engine's, or one of a process still running (this one)
    assert(os.execute("mkdir " .. tmp .. "/bearer-engine-x-abcdef " .. tmp .. "/keep"))
    local mine = ("bearer-engine-%d-abcdef"):format(io.open("/proc/self/stat"):read("n"))
    assert(os.execute("mkdir " .. tmp .. "/" .. mine))
    local out, ok = subprocess.run([[
      local core = require "bearer.core"
      print(core.engine_thread())
    ]], { TMPDIR = tmp })
    assert.is_true(ok, out)
    local now = entries()
    assert.is_nil(table.concat(now, " "):find(left, 1, true))
    for _, name in ipairs{ "bearer-engine-x-abcdef", "keep", mine } do
      assert.truthy(table.concat(now, " "):find(name, 1, true), name)
    end
    -- an engine still listening is left alone even when its directory's
    -- pid names no process here (another pid namespace sharing TMPDIR):
    -- a running engine renamed to the killed process's pid stands for it
    local stop = tmp .. "/stop"
    local running = subprocess.spawn(([[
      local core = require "bearer.core"
      print(core.engine_thread())
      while not io.open(%q) do core.sleep(0.02) end
    ]]):format(stop), { TMPDIR = tmp })
    local theirs
    for _ = 1, 500 do
      for _, name in ipairs(entries()) do
        if name ~= left and name:find("^bearer%-engine%-") and name ~= "bearer-engine-x-abcdef"
           and name ~= mine then
          theirs = name
        end
      end
      if theirs then break end
      require("bearer.core").sleep(0.01)
    end
    assert(theirs, "the running engine's directory")
    local hidden = left:gsub("%-%w+$", "-zzzzzz")
    assert(os.rename(tmp .. "/" .. theirs, tmp .. "/" .. hidden))
    out, ok = subprocess.run([[
      local core = require "bearer.core"
      print(core.engine_thread())
    ]], { TMPDIR = tmp })
    assert.is_true(ok, out)
    local sock = os.execute("test -S " .. tmp .. "/" .. hidden .. "/engine.sock")
    assert(io.open(stop, "w")):close()
    local ran_out, ran_ok = running.wait()
    assert.is_true(ran_ok, ran_out)
    assert.truthy(sock, "a listening engine's socket was removed")
    os.execute("rm -rf " .. tmp)
  end)
end)
