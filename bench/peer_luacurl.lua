-- bench/peer_luacurl.lua: a peer Lua client Debian ships, for the information row of
-- `make bench`: LuaJIT + lua-curl (Debian's package is the FreePOPs luacurl binding:
-- module "curl", easy_init/setopt/perform, no getinfo) + lua-cjson, one easy handle reused.
--   luajit peer_luacurl.lua verify N    N x GET /api/v1/verify, each body decoded
-- Env BENCH_URL, BENCH_TOKEN; prints the RESULT line bench/anchor.c prints.
local curl = require "curl"
local cjson = require "cjson"
local ffi = require "ffi"

ffi.cdef [[
  struct bench_timespec { long tv_sec; long tv_nsec; };
  int clock_gettime(int clk, struct bench_timespec *ts);
]]
local ts = ffi.new("struct bench_timespec")
local function now()   -- CLOCK_MONOTONIC (1 on Linux): lua-curl brings no clock
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local mode, n = arg[1], tonumber(arg[2])
local base, token = os.getenv("BENCH_URL"), os.getenv("BENCH_TOKEN")
if mode ~= "verify" or not (n and n > 0 and base and token) then
  io.stderr:write("usage: BENCH_URL=.. BENCH_TOKEN=.. luajit peer_luacurl.lua verify N\n")
  os.exit(2)
end

local c = curl.easy_init()
local chunks, nchunks = {}, 0
c:setopt(curl.OPT_URL, base .. "/api/v1/verify")
c:setopt(curl.OPT_HTTPHEADER, { "Authorization: Bearer " .. token, "Accept: application/json" })
c:setopt(curl.OPT_WRITEFUNCTION, function(s, len)
  nchunks = nchunks + 1
  chunks[nchunks] = s
  return len
end)
c:setopt(curl.OPT_FAILONERROR, 1)   -- no getinfo: a status >= 400 fails perform
c:setopt(curl.OPT_NOSIGNAL, 1)
c:setopt(curl.OPT_TIMEOUT, 30)

local errors = 0
local t0 = now()
for _ = 1, n do
  nchunks = 0
  local rc, err = c:perform()
  local doc = rc == 0 and cjson.decode(table.concat(chunks, "", 1, nchunks))
  if not (doc and doc.valid == true) then
    errors = errors + 1
    if errors <= 3 then io.stderr:write("error: ", tostring(err), "\n") end
  end
end
local secs = now() - t0
local f = io.open("/proc/self/status")
local hwm = tonumber(f:read("*a"):match("VmHWM:%s*(%d+)"))
f:close()
print(("RESULT n=%d secs=%.6f us=%.2f rss_kb=%d errors=%d"):format(n, secs, secs * 1e6 / n, hwm, errors))
os.exit(errors == 0 and 0 or 1)
