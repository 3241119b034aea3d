--- The specs' handle on the API emulator: bearer.emulator (the product a
-- user's own specs use), with every control call asserting, so a broken
-- emulator or client fails the spec loudly at the call.
--
--   local emulator = require "support.emulator"
--   local emu = emulator.start()          -- nginx on 127.0.0.1, a free port
--   emu:fault{ path = "/api/v1/verify", type = "status", status = 503 }
--   emu:stop()                            -- by pid, temp prefix removed
local cjson = require "cjson"
local product = require "bearer.emulator"

local M = setmetatable({}, { __index = product })

M.ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/support/[^/]+$")) or "."

local Spec = setmetatable({}, { __index = product.Emulator })
Spec.__index = Spec
Spec.__close = product.Emulator.stop

function Spec:control(method, path, body)
  local doc, err = product.Emulator.control(self, method, path, body)
  assert(doc ~= nil, err and tostring(err))
  return doc
end

--- GET `path` from this server; its decoded JSON (raises unless 200).
function Spec:get_json(path)
  local res, err = self.http:get(path)
  assert(res, err and tostring(err))
  assert(res.status == 200, ("%s: HTTP %d: %s"):format(path, res.status, res.body))
  return cjson.decode(res.body)
end

--- The arrival times (emulator's clock) of the requests under a path
-- prefix since the last reset, and the most that fell within any `per`
-- seconds: what a rate limit's proof asserts on.
function Spec:arrivals_under(prefix, per)
  local times = {}
  for _, r in ipairs(self:requests()) do
    if r.path:sub(1, #prefix) == prefix then times[#times + 1] = r.time end
  end
  table.sort(times)
  local most, first = 0, 1
  for i = 1, #times do
    while times[i] - times[first] >= per do first = first + 1 end
    most = math.max(most, i - first + 1)
  end
  return times, most
end

--- Starts an emulator; `env` (optional table) is passed to the launcher,
-- `template` (optional) is another nginx.conf template it runs the same
-- way (spec/nginx/*.conf.in), `timeout` the control client's.
function M.start(env, template, timeout)
  local emu, err = product.start{ env = env, template = template, timeout = timeout }
  assert(emu, err and tostring(err))
  return setmetatable(emu, Spec)
end

--- start() without the assert: nil, err when it did not start.
function M.try_start(env, template)
  local emu, err = product.start{ env = env, template = template }
  if not emu then return nil, err end
  return setmetatable(emu, Spec)
end

--- Drives an emulator (or another launcher-started nginx) someone else
-- started, at `url` with launcher prefix `prefix`; stop() stops it.
function M.attach(url, prefix)
  return setmetatable(product.attach(url, prefix), Spec)
end

M.json = cjson
return M
