-- bench/requests.lua: request throughput and memory of the Lua 5.4 client
-- against the bundled emulator (loopback, keep-alive). Prints figures and
-- checks them against the targets below; exits 1 when one is missed.
--   make bench
local bearer = require "bearer"
local core = require "bearer.core"
local emulator = require "support.emulator"

local TARGETS = {
  keepalive_rps = 1000,        -- sequential GETs per second, one client
  heap_growth_kib = 256,       -- Lua heap growth over 5,000 requests, after a GC
  key_bytes = 8192,            -- process memory per live key (its own page + userdata)
}

local function timeit(n, fn)
  local t0 = core.monotime()
  for i = 1, n do fn(i) end
  return core.monotime() - t0
end

local function rss_kib()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local emu = emulator.start()
local ok, failures = pcall(function()
  local results, missed = {}, {}
  local c = bearer.client{ base_url = emu.url, key = emulator.OVERTEN_KEY }
  assert(c:get("/echo/warm"))

  local n = 3000
  local secs = timeit(n, function() assert(c:get("/echo/b")) end)
  results.keepalive_rps = n / secs
  print(("keep-alive GET         %7.0f req/s  (%.0f us each, %d requests)"):format(n / secs, secs / n * 1e6, n))

  local m = 300
  secs = timeit(m, function()
    local fresh = bearer.client{ base_url = emu.url, key = emulator.OVERTEN_KEY }
    assert(fresh:get("/echo/f"))
    fresh:close()
  end)
  print(("new client per GET     %7.0f req/s  (%.0f us each, %d requests)"):format(m / secs, secs / m * 1e6, m))

  local body = string.rep("x", 1024 * 1024)
  secs = timeit(50, function() assert(c:post("/echo/p", { body = body })) end)
  print(("POST 1 MiB + echo      %7.1f MiB/s each way"):format(50 / secs))

  collectgarbage("collect")
  local before = collectgarbage("count")
  for _ = 1, 5000 do assert(c:get("/echo/m")) end
  collectgarbage("collect")
  results.heap_growth_kib = collectgarbage("count") - before
  print(("Lua heap growth        %7.1f KiB over 5000 requests"):format(results.heap_growth_kib))

  collectgarbage("collect")
  local rss0 = rss_kib()
  local keys = {}
  for i = 1, 2000 do keys[i] = bearer.key(emulator.OVERTEN_KEY) end
  results.key_bytes = (rss_kib() - rss0) * 1024 / 2000
  print(("memory per key         %7.0f bytes (2000 keys, RSS)"):format(results.key_bytes))
  for _, k in ipairs(keys) do k:close() end

  for name, target in pairs(TARGETS) do
    local v = results[name]
    local good = (name == "keepalive_rps") and v >= target or v <= target
    if not good then missed[#missed + 1] = ("%s = %.1f (target %s)"):format(name, v, target) end
  end
  return missed
end)
emu:stop()
if not ok then error(failures) end
if #failures > 0 then
  print("missed targets: " .. table.concat(failures, "; "))
  os.exit(1)
end
print("all targets met")
