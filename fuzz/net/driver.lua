--- fuzz/net/driver.lua: the client side of the network fuzzer.
-- usage: lua5.4 fuzz/net/driver.lua PORT FIRST LAST TIMEOUT
-- Makes calls FIRST..LAST through bearer's client against the fuzzing
-- server (fuzz/net/netfuzz.py, which starts this script and reads its
-- output), one line per call on stdout:
--   R <case> <status> <ms>          a response
--   E <case> <kind> <code> <ms>     an error object
--   X <case> <ms> <what>            the call raised (a finding)
--   V <case> <what>                 another broken promise (a finding)
-- Each call carries its case number in X-Fuzz-Case, which the server turns
-- into the response it sends, so a case replays with the same seed.
local port, first, last, timeout = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3]),
                                   tonumber(arg[4])
assert(port and first and last and timeout, "usage: driver.lua PORT FIRST LAST TIMEOUT")

-- {================ bearer API used by the network fuzzer
local bearer = require "bearer"
local core = require "bearer.core"
local SECRET = "netfuzzsecret0123456789ABCDEFxyz"
local function new_client()
  return bearer.client{
    base_url = "http://127.0.0.1:" .. port, key = SECRET, scheme = "token",
    max_retries = 0, timeout = timeout, connect_timeout = timeout,
    max_response_bytes = 1024 * 1024, sleep = function() end,
  }
end
-- Idempotent methods reuse connections; POST gets a fresh one (bearer's rule).
local function call(c, method, case, body)
  return c:request(method, "/case/" .. case, {
    headers = { ["X-Fuzz-Case"] = tostring(case) },
    body = body,
  })
end
local is_error, kinds = bearer.error.is, bearer.error.kinds
local monotime = core.monotime
-- }================

local METHODS = { "GET", "GET", "GET", "GET", "GET", "GET", "GET", "HEAD", "POST", "DELETE" }
local out = io.stdout
out:setvbuf("line")

local function violation(case, what)
  out:write(("V %d %s\n"):format(case, (tostring(what):gsub("[\r\n]", " "))))
end

local function check_response(case, res)
  if type(res.status) ~= "number" or type(res.headers) ~= "table" or type(res.body) ~= "string" then
    violation(case, "malformed response table")
    return
  end
  for k, v in pairs(res.headers) do
    if type(k) ~= "string" or type(v) ~= "string" then violation(case, "bad header entry") end
  end
end

local function check_error(case, err)
  if not is_error(err) then return violation(case, "not an error object: " .. tostring(err)) end
  if not kinds[err.kind] then return violation(case, "unknown kind " .. tostring(err.kind)) end
  local line = tostring(err)
  if line:find(SECRET, 1, true) or tostring(err.message):find(SECRET, 1, true)
     or (type(err.body) == "string" and err.body:find(SECRET, 1, true)) then
    violation(case, "the secret shows in an error: " .. line)
  end
end

local c = new_client()
for case = first, last do
  local method = METHODS[case % #METHODS + 1]
  local body = method == "POST" and ('{"case":%d}'):format(case) or nil
  local t0 = monotime()
  local ok, res, err = pcall(call, c, method, case, body)
  local ms = (monotime() - t0) * 1000
  if not ok then
    out:write(("X %d %.0f %s\n"):format(case, ms, (tostring(res):gsub("[\r\n]", " "))))
  elseif res then
    check_response(case, res)
    out:write(("R %d %d %.0f\n"):format(case, res.status, ms))
  else
    check_error(case, err)
    out:write(("E %d %s %s %.0f\n"):format(case, tostring(err.kind), tostring(err.code), ms))
  end
end
c:close()
out:write("DONE\n")
