--- bearer.emulator: a local stand-in for the Overten and Optiverse APIs
-- (nginx with its Lua module on 127.0.0.1), for testing code that uses
-- bearer without the real services, as stripe-mock is for Stripe.
--
--   local emulator = require "bearer.emulator"
--   local emu = assert(emulator.start())          -- a free loopback port
--   local c = require("bearer.overten").client{
--     api_key = emulator.OVERTEN_KEY, base_url = emu:overten_url() }
--   emu:fault{ path = "/api/v1/verify", type = "status", status = 503 }
--   emu:reset()                                   -- seeded state, no faults
--   emu:stop()                                    -- by pid, prefix removed
--
-- Needs: Debian's nginx and libnginx-mod-http-lua (which brings LuaJIT,
-- lua-cjson for it and lua-resty-core). The server's own files (launcher,
-- nginx.conf.in, its Lua modules) live in spec/emulator in a checkout and
-- are installed by the rock under bearer/emulator/server/ next to this
-- file; spec/emulator/README.md documents the control API.
--
-- This module owns starting, stopping and driving an emulator; the
-- launcher script owns the nginx process (port choice, pid-checked stop).
local bearer = require "bearer"
local errors = require "bearer.error"
local json = require "bearer.json"

local M = {}

--- The seeded credentials (spec/emulator/README.md): test values the
-- emulator alone accepts, not secrets.
M.OVERTEN_KEY = "sk_live_0123456789abcdefABCDEF012345"
M.OPTIVERSE_KEY = "optiuser_v1_test_4f9a2c1d8e7b6a5f"

--- The uid that owns the seeded organization (org_test).
M.OWNER_UID = "emu_owner"

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    for j = 1, 2 + (b and 1 or 0) + (c and 1 or 0) do
      local idx = math.floor(n / 64 ^ (4 - j)) % 64
      out[#out + 1] = B64:sub(idx + 1, idx + 1)
    end
  end
  return table.concat(out)
end

--- An unsigned Firebase-style ID token for the admin endpoints: the
-- emulator checks its claims (`sub`, `exp`), not a signature, so only the
-- emulator accepts it. `claims` default: sub = OWNER_UID, exp = in 1 h.
---@param claims table|nil
---@return string
function M.firebase_token(claims)
  if claims ~= nil and type(claims) ~= "table" then
    error("bad argument #1 to 'firebase_token' (table expected, got " .. type(claims) .. ")", 2)
  end
  local c = {}
  for k, v in pairs(claims or {}) do c[k] = v end
  c.sub = c.sub or M.OWNER_UID
  c.exp = c.exp or os.time() + 3600
  local body = assert(json.encode(c))
  return b64url('{"alg":"RS256","typ":"JWT"}') .. "." .. b64url(body) .. ".c2lnbmF0dXJl"
end

--- What the emulator needs on the machine, and where the launcher looks.
M.NEEDS = "nginx with its Lua module (Debian: apt-get install nginx libnginx-mod-http-lua)"
M.NGINX_LUA_MODULE = "/usr/lib/nginx/modules/ngx_http_lua_module.so"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The server's directory: installed by the rock next to this file, or the
-- checkout's spec/emulator when this file is lua/bearer/emulator.lua.
local function server_dir()
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
  for _, dir in ipairs{ here .. "/emulator/server", here .. "/../../spec/emulator" } do
    if exists(dir .. "/emulator") and exists(dir .. "/nginx.conf.in") then return dir end
  end
  return nil
end

M.DIR = server_dir()
--- The launcher (a bash script, run through bash: an installed copy has no
-- exec bit).
M.SCRIPT = M.DIR and (M.DIR .. "/emulator") or nil

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function config_error(code, message)
  return errors.new{ kind = "config", code = code, message = message }
end

local function find_nginx()
  local p = io.popen("command -v nginx 2>/dev/null")
  local found = p and p:read("*l")
  if p then p:close() end
  if found and found ~= "" then return found end
  if exists("/usr/sbin/nginx") then return "/usr/sbin/nginx" end
  return nil
end

--- Whether this machine can run the emulator: true, or nil and a `config`
-- error naming what to install.
---@return boolean|nil, table|nil
function M.available()
  if not M.SCRIPT then
    return nil, config_error("emulator_missing",
      "the emulator's server files are not installed next to bearer.emulator")
  end
  if not find_nginx() then
    return nil, config_error("emulator_needs_nginx", "nginx not found: the emulator needs " .. M.NEEDS)
  end
  if not exists(M.NGINX_LUA_MODULE) then
    return nil, config_error("emulator_needs_lua_module",
      M.NGINX_LUA_MODULE .. " not found: the emulator needs " .. M.NEEDS)
  end
  return true
end

local Emulator = {}
Emulator.__index = Emulator
M.Emulator = Emulator

local ENV_NAME = "^[%a_][%w_]*$"

-- The launcher's command line for `args` with `env` (name -> value).
local function launcher(args, env)
  local prefix = ""
  local names = {}
  for k in pairs(env or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    if type(k) ~= "string" or not k:find(ENV_NAME) then
      error("bad option 'env' to 'start' (variable names expected, got " .. tostring(k) .. ")", 3)
    end
    prefix = prefix .. k .. "=" .. quote(env[k]) .. " "
  end
  return prefix .. "bash " .. quote(M.SCRIPT) .. " " .. args .. " 2>&1"
end

--- emulator.start([{ port =, workers =, template =, env =, timeout = }]) -> emulator | nil, err
-- Starts nginx on 127.0.0.1 (a free port unless `port`), waits until it
-- answers, and returns the handle; a `config` error says what is missing
-- or why nginx did not start (its log's tail). `template` runs another
-- nginx.conf template through the same launcher; `env` adds variables
-- for it; `timeout` is the control client's (bearer.client's option).
---@param opts { port: integer|nil, workers: integer|nil, template: string|nil, env: table|nil,
---              timeout: number|nil }|nil
---@return table|nil, table|nil
function M.start(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'start' (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  local ok, err = M.available()
  if not ok then return nil, err end
  local env = {}
  for k, v in pairs(opts.env or {}) do env[k] = v end
  if opts.port ~= nil then
    if type(opts.port) ~= "number" or opts.port % 1 ~= 0 then
      error("bad option 'port' to 'start' (whole number expected, got " .. tostring(opts.port) .. ")", 2)
    end
    env.BEARER_EMULATOR_PORT = ("%d"):format(opts.port)
  end
  if opts.workers ~= nil then env.BEARER_EMULATOR_WORKERS = opts.workers end
  local args = "start" .. (opts.template and (" " .. quote(opts.template)) or "")
  local p = assert(io.popen(launcher(args, env)))
  local out = p:read("*a")
  p:close()
  local url = out:match("BEARER_EMULATOR_URL=(%S+)")
  local prefix = out:match("BEARER_EMULATOR_PREFIX=(%S+)")
  if not (url and prefix) then
    return nil, config_error("emulator_start_failed",
      "the emulator did not start: " .. (out:gsub("%s+$", ""):gsub("\n", " | ")))
  end
  return M.attach(url, prefix, { timeout = opts.timeout })
end

--- emulator.attach(url [, prefix [, { timeout = }]]) -> emulator: drives
-- one started elsewhere (`bearer emulator start`, the launcher); with its
-- prefix, stop() stops it too.
---@param url string
---@param prefix string|nil
---@param opts { timeout: number|nil }|nil
---@return table
function M.attach(url, prefix, opts)
  if type(url) ~= "string" or not url:find("^https?://") then
    error("bad argument #1 to 'attach' (http URL expected, got " .. tostring(url) .. ")", 2)
  end
  local self = setmetatable({ url = url:gsub("/+$", ""), prefix = prefix }, Emulator)
  self.http = bearer.client{ base_url = self.url, max_retries = 0,
                             timeout = opts and opts.timeout or nil }
  return self
end

--- Stops nginx by the pid in its prefix (only a process started with
-- that prefix's config) and removes the prefix; true, or nil, err.
---@return boolean|nil, table|nil
function Emulator:stop()
  local ok, out = true, ""
  if self.prefix then
    local p = assert(io.popen(launcher("stop " .. quote(self.prefix))))
    out = p:read("*a")
    ok = p:close()
    self.prefix = nil
  end
  if self.http then self.http:close() end
  self.http = nil
  if not ok then
    return nil, config_error("emulator_stop_failed", "the emulator did not stop: " .. out)
  end
  return true
end
Emulator.__close = Emulator.stop

--- The base URLs the API modules take (base_url, or OVERTEN_BASE_URL and
-- OPTIVERSE_BASE_URL).
---@return string
function Emulator:overten_url() return self.url .. "/api/v1" end
---@return string
function Emulator:optiverse_url() return self.url .. "/external-api" end

--- The variables that point bearer (and `bearer`) at this emulator with
-- its seeded keys, name -> value.
---@return table<string, string>
function Emulator:env()
  return {
    BEARER_EMULATOR_URL = self.url, BEARER_EMULATOR_PREFIX = self.prefix,
    OVERTEN_BASE_URL = self:overten_url(), OVERTEN_API_KEY = M.OVERTEN_KEY,
    OPTIVERSE_BASE_URL = self:optiverse_url(), OPTIVERSE_API_KEY = M.OPTIVERSE_KEY,
  }
end

--- One control request (path under /_emulator): the decoded JSON (true
-- for an empty body), or nil, err.
---@param method string
---@param path string
---@param body table|nil
---@return any, table|nil
function Emulator:control(method, path, body)
  if not self.http then
    return nil, config_error("emulator_stopped", "this emulator handle was stopped")
  end
  local res, err = self.http:request(method, "/_emulator" .. path, { json = body })
  if not res then return nil, err end
  if res.json ~= nil then return res.json end
  return true
end

--- Whether it answers GET /_emulator/health.
---@return table|nil, table|nil
function Emulator:health() return self:control("GET", "/health") end
--- Seeded state back, request log, faults and config switches cleared.
---@return table|nil, table|nil
function Emulator:reset() return self:control("POST", "/reset") end
--- Queues a fault ({ path=, method=, times=, type=, ... }: the README's table).
---@param spec table
---@return table|nil, table|nil
function Emulator:fault(spec) return self:control("POST", "/faults", spec) end
--- The pending faults.
---@return table|nil, table|nil
function Emulator:faults() return self:control("GET", "/faults") end
--- Clears every pending fault.
---@return table|nil, table|nil
function Emulator:clear_faults() return self:control("DELETE", "/faults") end
--- Sets config switches ({ name = value }); the current ones with no argument.
---@param spec table|nil
---@return table|nil, table|nil
function Emulator:config(spec)
  if spec == nil then return self:control("GET", "/config") end
  return self:control("POST", "/config", spec)
end
--- Clears the request log.
---@return table|nil, table|nil
function Emulator:clear_requests() return self:control("DELETE", "/requests") end
--- Inserts `count` new Optiverse records ahead of the newest.
---@param count integer
---@return table|nil, table|nil
function Emulator:insert_records(count)
  return self:control("POST", "/optiverse/records", { count = count })
end
--- Moves the Optiverse poll-limit clock `seconds` forward.
---@param seconds number
---@return table|nil, table|nil
function Emulator:advance_clock(seconds)
  return self:control("POST", "/optiverse/clock", { advance = seconds })
end

--- Every non-control request since the last reset, or those to `path`.
---@param path string|nil
---@return table|nil, table|nil
function Emulator:requests(path)
  local all, err = self:control("GET", "/requests")
  if not all then return nil, err end
  if not path then return all end
  local seen = {}
  for _, r in ipairs(all) do
    if r.path == path then seen[#seen + 1] = r end
  end
  return seen
end

--- How many requests under a path prefix (plain text) since the last reset.
---@param prefix string
---@return integer|nil, table|nil
function Emulator:count_under(prefix)
  local all, err = self:control("GET", "/requests")
  if not all then return nil, err end
  local n = 0
  for _, r in ipairs(all) do
    if r.path:sub(1, #prefix) == prefix then n = n + 1 end
  end
  return n
end

--- nginx's error log lines at [error] or worse (a started emulator's).
---@return string[]
function Emulator:error_lines()
  local f = self.prefix and io.open(self.prefix .. "/logs/error.log")
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

return M
