--- Starts and drives the bundled API emulator (spec/emulator) from specs.
--
--   local emulator = require "support.emulator"
--   local emu = emulator.start()          -- nginx on 127.0.0.1, a free port
--   emu:fault{ path = "/api/v1/verify", type = "status", status = 503 }
--   emu:stop()                            -- by pid, temp prefix removed
--
-- Control calls go through bearer's own client without a key: the control
-- API needs none, and a broken client fails every spec loudly anyway.
local bearer = require "bearer"
local cjson = require "cjson"

local M = {}
M.__index = M

M.ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/support/[^/]+$")) or "."
M.SCRIPT = M.ROOT .. "/spec/emulator/emulator"

-- Seeded credentials (spec/emulator/README.md).
M.OVERTEN_KEY = "sk_live_0123456789abcdefABCDEF012345"
M.OPTIVERSE_KEY = "optiuser_v1_test_4f9a2c1d8e7b6a5f"

--- Starts an emulator; `env` (optional table) is passed to the launcher.
-- With `template` (a spec/nginx/*.conf.in path under the tree) the
-- launcher starts that nginx app instead, and its client waits up to
-- 30 s for an answer (the app's own calls take time).
function M.start(env, template)
  local prefix = ""
  for k, v in pairs(env or {}) do prefix = prefix .. k .. "=" .. tostring(v) .. " " end
  local p = assert(io.popen(prefix .. M.SCRIPT .. " start"
                            .. (template and " " .. M.ROOT .. "/" .. template or "") .. " 2>&1"))
  local out = p:read("a")
  p:close()
  local url = out:match("BEARER_EMULATOR_URL=(%S+)")
  local dir = out:match("BEARER_EMULATOR_PREFIX=(%S+)")
  assert(url and dir, (template or "emulator") .. " did not start:\n" .. out)
  return M.attach(url, dir, template and 30 or nil)
end

--- Drives an emulator (or another launcher-started nginx) someone else
-- started, at `url` with launcher prefix `prefix`; stop() stops it.
function M.attach(url, prefix, timeout)
  local self = setmetatable({ url = url, prefix = prefix }, M)
  self.http = bearer.client{ base_url = url, max_retries = 0, timeout = timeout }
  return self
end

--- The arrival times (emulator's clock) of the requests under a path
-- prefix since the last reset, and the most that fell within any `per`
-- seconds: what a rate limit's proof asserts on.
function M:arrivals_under(prefix, per)
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

function M:stop()
  if self.prefix then
    os.execute(M.SCRIPT .. " stop " .. self.prefix .. " >/dev/null 2>&1")
    self.prefix = nil
  end
  if self.http then self.http:close() end
end

M.overten_url = function(self) return self.url .. "/api/v1" end
M.optiverse_url = function(self) return self.url .. "/external-api" end

--- One control request; returns the decoded JSON (or true for no body).
function M:control(method, path, body)
  local res, err = self.http:request(method, "/_emulator" .. path,
                                     { json = body })
  assert(res, err and tostring(err))
  return res.json or true
end

--- GET `path` from this server; its decoded JSON (raises unless 200).
function M:get_json(path)
  local res, err = self.http:get(path)
  if not res then error(tostring(err), 2) end
  if res.status ~= 200 then error(("%s: HTTP %d: %s"):format(path, res.status, res.body), 2) end
  return cjson.decode(res.body)
end

function M:reset() return self:control("POST", "/reset") end
function M:fault(spec) return self:control("POST", "/faults", spec) end
function M:config(spec) return self:control("POST", "/config", spec) end
function M:clear_faults() return self:control("DELETE", "/faults") end

--- How many requests under a path prefix (plain text, e.g. "/external-api/")
-- the emulator saw since the last reset.
function M:count_under(prefix)
  local n = 0
  for _, r in ipairs(self:requests()) do
    if r.path:sub(1, #prefix) == prefix then n = n + 1 end
  end
  return n
end

--- Every non-control request the emulator saw since the last reset.
function M:requests(path)
  local all = self:control("GET", "/requests")
  if not path then return all end
  local seen = {}
  for _, r in ipairs(all) do
    if r.path == path then seen[#seen + 1] = r end
  end
  return seen
end

--- The nginx error log's [error]/[crit]/[alert]/[emerg] lines, if any.
function M:error_lines()
  local f = io.open(self.prefix .. "/logs/error.log")
  if not f then return {} end
  local lines = {}
  for line in f:lines() do
    if line:find("%[error%]") or line:find("%[crit%]") or line:find("%[alert%]")
       or line:find("%[emerg%]") then
      lines[#lines + 1] = line
    end
  end
  f:close()
  return lines
end

M.json = cjson
return M
