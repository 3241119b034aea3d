--- bearer: keys that cannot leak, a bearer-token HTTP client, one error model.
--
--   local bearer = require "bearer"
--   local key = bearer.key.from_env("OVERTEN_API_KEY", { scheme = "overten" })
--   local c = bearer.client{ base_url = "https://backend.overtenai.com/api/v1", key = key }
--   local res, err = c:get("/verify")
local core = require "bearer.core"
local client = require "bearer.client"
local errors = require "bearer.error"
local ratelimit = require "bearer.ratelimit"

local M = {
  _VERSION = core._VERSION,
  error = errors,
  client = client.new,
  ratelimit = ratelimit.new,
}

--- bearer.key(secret [, {scheme=}]) raises on a secret its scheme refuses;
-- key.from_env and key.from_file return nil, err instead (the secret comes
-- from outside the program). Schemes: overten, optiverse, firebase,
-- webhook, token (no format, only the header rules); detected when absent.
M.key = setmetatable({
  new = core.key_new,
  from_env = core.key_from_env,
  from_file = core.key_from_file,
  is = core.key_is,
}, {
  __call = function(_, secret, opts) return core.key_new(secret, opts) end,
})

return M
