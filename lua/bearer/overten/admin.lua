--- bearer.overten.admin: the Firebase-authenticated part of Overten
-- (POST /signup and /organizations/{org_id}/api-keys).
--
--   local admin = overten.admin{ token_provider = get_firebase_token }
--   local k = assert(admin:create_key(org_id, { name = "ci" }))   -- k.secret: bearer.Key
--
-- The token is a bearer.Key (scheme firebase) set on the generic client
-- with set_key. With a token_provider it is fetched again when its `exp`
-- is within 60 s of the client's clock, and once more when a call gets a
-- 401 (at most one refresh per call: a second 401 is returned).
--
-- The endpoints are declared in bearer.overten.endpoints; rotate_key is
-- bearer.rotation's steps with this API's calls.
local bearer = require "bearer"
local check = require "bearer.check"
local client = require "bearer.client"
local endpoint = require "bearer.endpoint"
local endpoints = require "bearer.overten.endpoints"
local errors = require "bearer.error"
local rotation = require "bearer.rotation"

local M = { REFRESH_BEFORE = 60 }
--- The Firebase-authenticated client (signup, keys); the declared
-- endpoints' methods are in lua/bearer/types/overten.lua.
---@class bearer.overten.Admin
---@field http bearer.Client
local Admin = {}
Admin.__index = Admin
M.Admin = Admin

local OWN = { firebase_token = true, token_provider = true }

--- overten.admin{ firebase_token = (string | Key) | token_provider = fn,
--   base_url=, ...bearer.client options }
---@param opts bearer.overten.AdminOptions
---@param level integer|nil levels above the caller, for raises
---@return bearer.overten.Admin
function M.new(opts, level)
  level = (level or 1) + 1
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'admin' (table expected, got " .. type(opts) .. ")", level)
  end
  local token, provider = opts.firebase_token, opts.token_provider
  if provider ~= nil and type(provider) ~= "function" then
    error("bad option 'token_provider' to 'admin' (function expected, got " .. type(provider) .. ")", level)
  end
  if token ~= nil and type(token) ~= "string" and not bearer.key.is(token) then
    error("bad option 'firebase_token' to 'admin' (string or bearer.Key expected, got " .. type(token) .. ")", level)
  end
  if token == nil and provider == nil then
    error(errors.new{ kind = "config", code = "missing_token",
      message = "overten.admin needs firebase_token or token_provider" }, level)
  end
  if opts.key ~= nil or opts.api_key ~= nil or opts.auth ~= nil then
    error("bad option '" .. (opts.key and "key" or opts.api_key and "api_key" or "auth")
          .. "' to 'admin' (the admin client authenticates with a Firebase token)", level)
  end
  if opts.error_parser ~= nil then
    error("bad option 'error_parser' to 'admin' (the module reads its own errors)", level)
  end
  local overten = require "bearer.overten"
  local hopts, options = {}, {}
  for k, v in pairs(opts) do
    if not OWN[k] then hopts[k], options[k] = v, v end
  end
  hopts.base_url = opts.base_url or os.getenv("OVERTEN_BASE_URL") or overten.DEFAULT_BASE_URL
  options.base_url = hopts.base_url
  hopts.error_parser = overten.parse_error
  local http = client.new(hopts, level)
  -- options: what a client made with a new key (rotate_key) inherits
  local self = setmetatable({ http = http, provider = provider, options = options }, Admin)
  self.base_url = http:base_url()
  if token ~= nil then
    if type(token) == "string" then
      token = bearer.key(token, { scheme = "firebase" })   -- raises: the caller handed it over
      self.owned = token
    end
    http:set_key(token)
  end
  return self
end

--- Frees the connection (also `<close>`); a fixed token's key is the caller's.
function Admin:close()
  self.http:close()
  if self.owned then self.owned:close() end
end
Admin.__close = Admin.close

--- c:with_options{ timeout=, max_retries=, headers=, retry_statuses= }: a
-- light view sharing this client's connection, key and limits, with
-- other per-call settings (bearer.client's with_options).
---@param opts bearer.ViewOptions
---@return bearer.overten.Admin view
function Admin:with_options(opts) return client.api_view(self, opts) end

-- {====================================================== tokens

local function provider_failed(message, cause)
  return nil, errors.new{ kind = "auth", code = "token_provider_failed", message = message, cause = cause }
end

--- Asks the provider for a token and sets it. nil, err (never a raise) if
-- the provider raises or hands back something that is not a Firebase token.
---@return true|nil ok
---@return bearer.Error|nil err
function Admin:refresh()
  if not self.provider then
    return nil, errors.new{ kind = "auth", code = "token_expired",
      message = "the Firebase token expired and there is no token_provider to refresh it" }
  end
  local ok, token, perr = pcall(self.provider)
  if not ok then
    local why = errors.is(token) and token.message or tostring(token)
    return provider_failed("token_provider raised: " .. why, errors.is(token) and token or nil)
  end
  if token == nil or token == false then
    local why = errors.is(perr) and perr.message or (perr ~= nil and tostring(perr) or "no token")
    return provider_failed("token_provider returned no token: " .. why, errors.is(perr) and perr or nil)
  end
  local owned = nil
  if type(token) == "string" then
    local made, key = pcall(bearer.key, token, { scheme = "firebase" })
    if not made then
      if errors.is(key) then return nil, key end   -- kind config: not a JWT
      return nil, errors.new{ kind = "config", code = "invalid_token", message = tostring(key) }
    end
    token, owned = key, key
  elseif not bearer.key.is(token) then
    return nil, errors.new{ kind = "config", code = "invalid_token",
      message = "token_provider must return a string or a bearer.Key, got " .. type(token) }
  end
  self.http:set_key(token)
  -- the previous token, if we made it, is wiped now rather than at GC
  if self.owned then self.owned:close() end
  self.owned = owned
  self.refreshes = (self.refreshes or 0) + 1
  return true
end

local function fresh(self)
  local key = self.http:key()
  if key == nil then return self:refresh() end
  if self.provider then
    local exp = key:expires_at()
    if exp and exp - self.http:now() <= M.REFRESH_BEFORE then return self:refresh() end
  end
  return true
end

-- One API call with the token rules: refresh first if it is about to
-- expire, and once more on a 401.
local function call(self, method, path, ropts)
  local ok, err = fresh(self)
  if not ok then return nil, err end
  local res
  res, err = self.http:request(method, path, ropts)
  if not res and err.status == 401 and self.provider then
    ok, err = self:refresh()
    if not ok then return nil, err end
    res, err = self.http:request(method, path, ropts)
  end
  if not res then return nil, err end
  if res.json ~= nil then return res.json end
  return true
end

-- }======================================================

-- {====================================================== endpoints

endpoint.install(Admin, endpoints.admin, call)

--- admin:rotate_key(org_id, old_key_id [, { name=, deploy = fn(key, info) }]) -> new key info
-- Mints a key, checks it with GET /verify (and that it belongs to
-- org_id), hands it to deploy(), then revokes the old key. If the check or
-- deploy fails (raises, or returns false / nil, err), the new key is
-- revoked, the old one keeps working, and nil, err comes back.
---@param org_id string
---@param old_key_id string
---@param opts { name: string|nil, deploy: fun(key: bearer.Key, info: table): any }|nil
---@return table|nil result
---@return bearer.Error|nil err
function Admin:rotate_key(org_id, old_key_id, opts)
  check.segment("rotate_key", 1, org_id)
  check.segment("rotate_key", 2, old_key_id)
  if opts ~= nil and type(opts) ~= "table" then check.bad_arg(3, "rotate_key", "table", type(opts)) end
  opts = opts or {}
  check.fields("rotate_key", opts, { deploy = { "function" }, name = { "string" } }, nil, 1)
  return rotation.rotate{
    mint = function() return self:create_key(org_id, { name = opts.name }) end,
    check = function(new)
      local copts = {}
      for k, v in pairs(self.options) do copts[k] = v end
      copts.api_key = new.secret
      local c = require("bearer.overten").client(copts)
      local org, verr = c:verify()
      c:close()
      if not org then return nil, verr end
      if bearer.key.is(org.webhook_secret) then org.webhook_secret:close() end
      if org.org_id ~= org_id then
        return nil, errors.new{ kind = "auth", code = "key_check_failed",
          message = ("the new key belongs to org %s, not %s"):format(tostring(org.org_id), org_id) }
      end
      return true
    end,
    deploy = opts.deploy,
    revoke = function(key_id) return self:revoke_key(org_id, key_id) end,
    old_key_id = old_key_id,
  }
end

-- }======================================================

return M
