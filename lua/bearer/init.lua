--- bearer: keys that cannot leak, a bearer-token HTTP client, one error model.
--
--   local bearer = require "bearer"
--   local key = bearer.key.from_env("OVERTEN_API_KEY", { scheme = "overten" })
--   local c = bearer.client{ base_url = "https://backend.overtenai.com/api/v1", key = key }
--   local res, err = c:get("/verify")
-- The C core is built once per ABI (make: build/5.4 and build/luajit); the
-- other one fails in dlopen with a bare "undefined symbol". Say why.
local loaded, core = pcall(require, "bearer.core")
if not loaded then
  local why = tostring(core)
  if why:find("undefined symbol: luaL?_", 1) then
    local running = (type(jit) == "table" and jit.version) or _VERSION
    error(("bearer: the bearer/core.so found on package.cpath was built for another Lua "
           .. "than %s. LuaJIT and OpenResty need the LuaJIT build (build/luajit/ from "
           .. "`make`, or `luarocks make` with LuaJIT's luarocks); Lua 5.4 needs build/5.4/. "
           .. "The loader said: %s"):format(running, why), 0)
  end
  error(why, 0)
end
local client = require "bearer.client"
local errors = require "bearer.error"
local host = require "bearer.host"
local json = require "bearer.json"
local ratelimit = require "bearer.ratelimit"

local M = {
  _VERSION = core._VERSION,
  error = errors,
  client = client.new,
  ratelimit = ratelimit.new,
  host = host,
  --- bearer.response_of(t) -> { status=, headers=, request_id=, attempts=, time= } | nil
  -- for any table an API method returned (a decoded body, a page).
  response_of = client.response_of,
  --- bearer.array(t) -> t, sent as a JSON array (`[]` when empty).
  array = json.array,
}

--- Hashes and HMACs from the C core. An HMAC key may be a bearer.Key,
-- whose secret never becomes a Lua string.
M.crypto = {
  sha256_hex = core.sha256_hex,
  hmac_sha256_hex = core.hmac_sha256_hex,
  hmac_sha256_matches = core.hmac_sha256_matches,
}

--- `n` random bytes as hex, read from the kernel. Idempotency keys and
-- temporary names must not collide across processes, which math.random
-- (seeded per process, often identically) cannot promise.
---@param n integer
---@return string
function M.random_hex(n)
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(n)
  if f then f:close() end
  if not bytes or #bytes ~= n then
    -- No /dev/urandom (a chroot): hash what differs between calls and
    -- processes; weaker, but still unique enough for an idempotency key.
    bytes = core.sha256_hex(table.concat({ tostring(core.now()), tostring(core.monotime()),
                                           tostring({}), tostring(math.random()) }, "|"))
    return bytes:sub(1, 2 * n)
  end
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- bearer.key(secret [, {scheme=}]) raises on a secret its scheme refuses;
-- key.from_env and key.from_file return nil, err instead (the secret comes
-- from outside the program). Schemes are declared by the API modules
-- (overten, optiverse, firebase, webhook) or registered; token (no format,
-- only the header rules) is the default; detected when absent (bearer.key).
M.key = require "bearer.key"

return M
