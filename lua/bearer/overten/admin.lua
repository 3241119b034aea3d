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
local bearer = require "bearer"
local errors = require "bearer.error"
local paging = require "bearer.overten.paging"
local util = require "bearer.overten.util"

local M = { REFRESH_BEFORE = 60, TIERS = { free = true, pro = true, enterprise = true } }
local Admin = {}
Admin.__index = Admin
M.Admin = Admin

local bad_arg, bad_option, opt, invalid = util.bad_arg, util.bad_option, util.opt, util.invalid

local OWN = { firebase_token = true, token_provider = true }

--- overten.admin{ firebase_token = (string | Key) | token_provider = fn,
--   base_url=, ...bearer.client options }
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
  local overten = require "bearer.overten"
  local hopts = {}
  for k, v in pairs(opts) do if not OWN[k] then hopts[k] = v end end
  hopts.base_url = opts.base_url or os.getenv("OVERTEN_BASE_URL") or overten.DEFAULT_BASE_URL
  local http = require("bearer.client").new(hopts, level)
  local self = setmetatable({ http = http, provider = provider, options = hopts }, Admin)
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

function Admin:close()
  self.http:close()
  if self.owned then self.owned:close() end
end
Admin.__close = Admin.close

-- {====================================================== tokens

local function provider_failed(message, cause)
  return nil, errors.new{ kind = "auth", code = "token_provider_failed", message = message, cause = cause }
end

--- Asks the provider for a token and sets it. nil, err (never a raise) if
-- the provider raises or hands back something that is not a Firebase token.
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
  return util.body(res)
end

-- }======================================================

-- {====================================================== endpoints

local function keep_key_secrets(doc)
  if type(doc) ~= "table" then return doc end
  local ok, err = util.keep_secret(doc, "secret", "overten")
  if ok then ok, err = util.keep_secret(doc, "webhook_secret", "webhook") end
  if not ok then
    err.key_id, err.org_id = doc.key_id, doc.org_id
    return nil, err
  end
  return doc
end

--- admin:signup{ org_name= | existing_org_id=, tier= "free", key_name= }
-- -> { org_id, key_id, secret (Key), webhook_secret (Key), ... }
function Admin:signup(opts)
  if type(opts) ~= "table" then bad_arg(1, "signup", "table", type(opts)) end
  local name = opt(opts, "org_name", "string", "signup")
  local existing = opt(opts, "existing_org_id", "string", "signup")
  local tier = opt(opts, "tier", "string", "signup")
  local key_name = opt(opts, "key_name", "string", "signup")
  if (name == nil) == (existing == nil) then
    return invalid("signup needs exactly one of org_name and existing_org_id")
  end
  if name and (#name < 2 or #name > 120) then return invalid("org_name must be 2 to 120 characters") end
  if tier and not M.TIERS[tier] then return invalid("tier must be free, pro or enterprise (got '%s')", tier) end
  if key_name and #key_name > 80 then return invalid("key_name must be at most 80 characters") end
  local doc, err = call(self, "POST", "/signup", { json = opts })
  if not doc then return nil, err end
  return keep_key_secrets(doc)
end

local function keys_path(fname, org_id)
  return "/organizations/" .. util.segment(fname, 1, org_id) .. "/api-keys"
end

--- admin:create_key(org_id [, { name= }]) -> { key_id, prefix, secret (Key), ... }
-- The name is sent as both `name` and `key_name` (the notes do not say
-- which the API reads; signup uses key_name).
function Admin:create_key(org_id, opts)
  local path = keys_path("create_key", org_id)
  if opts ~= nil and type(opts) ~= "table" then bad_arg(2, "create_key", "table", type(opts)) end
  opts = opts or {}
  local name = opt(opts, "name", "string", "create_key")
  if name and #name > 80 then return invalid("name must be at most 80 characters") end
  local body = {}
  for k, v in pairs(opts) do body[k] = v end
  body.key_name = body.key_name or name
  local doc, err = call(self, "POST", path, { json = body })
  if not doc then return nil, err end
  return keep_key_secrets(doc)
end

--- for item in admin:keys(org_id) do print(item.key_id, item.prefix, item.revoked_at) end
function Admin:keys(org_id, filters)
  local path = keys_path("keys", org_id)
  if filters ~= nil and type(filters) ~= "table" then bad_arg(2, "keys", "table", type(filters)) end
  local q = util.query(filters or {}, "keys")
  return paging.new(function(cursor)
    local query = {}
    for k, v in pairs(q) do query[k] = v end
    query.cursor = cursor
    return call(self, "GET", path, { query = query })
  end)
end

--- admin:revoke_key(org_id, key_id) -> true | nil, err
function Admin:revoke_key(org_id, key_id)
  local path = keys_path("revoke_key", org_id) .. "/" .. util.segment("revoke_key", 2, key_id)
  return call(self, "DELETE", path)
end

--- admin:rotate_key(org_id, old_key_id [, { name=, deploy = fn(key, info) }]) -> new key info
-- Mints a key, checks it with GET /verify (and that it belongs to
-- org_id), hands it to deploy(), then revokes the old key. If the check or
-- deploy fails (raises, or returns false / nil, err), the new key is
-- revoked, the old one keeps working, and nil, err comes back.
function Admin:rotate_key(org_id, old_key_id, opts)
  util.segment("rotate_key", 1, org_id)
  util.segment("rotate_key", 2, old_key_id)
  if opts ~= nil and type(opts) ~= "table" then bad_arg(3, "rotate_key", "table", type(opts)) end
  opts = opts or {}
  local deploy = opt(opts, "deploy", "function", "rotate_key")
  local new, err = self:create_key(org_id, { name = opts.name })
  if not new then return nil, err end

  local function undo(e)
    local ok, rerr = self:revoke_key(org_id, new.key_id)
    if not ok then e.revoke_error = rerr end
    e.key_id = new.key_id
    new.secret:close()
    return nil, e
  end

  local overten = require "bearer.overten"
  local copts = {}
  for k, v in pairs(self.options) do copts[k] = v end
  copts.api_key = new.secret
  local client = overten.client(copts)
  local org, verr = client:verify()
  client:close()
  if not org then return undo(verr) end
  if org.org_id ~= org_id then
    return undo(errors.new{ kind = "auth", code = "key_check_failed",
      message = ("the new key belongs to org %s, not %s"):format(tostring(org.org_id), org_id) })
  end
  if type(org.webhook_secret) ~= "nil" and bearer.key.is(org.webhook_secret) then org.webhook_secret:close() end

  if deploy then
    local ok, r, derr = pcall(deploy, new.secret, new)
    if not ok then
      return undo(errors.is(r) and r or errors.new{ kind = "config", code = "deploy_failed",
                                                  message = "deploy raised: " .. tostring(r) })
    end
    if r == false or (r == nil and derr ~= nil) then
      return undo(errors.is(derr) and derr or errors.new{ kind = "config", code = "deploy_failed",
        message = "deploy failed" .. (derr ~= nil and (": " .. tostring(derr)) or "") })
    end
  end

  local ok, rerr = self:revoke_key(org_id, old_key_id)
  if not ok then
    -- The new key is live and deployed: keep it, say the old one is not gone.
    rerr.new_key = new
    return nil, rerr
  end
  return new
end

-- }======================================================

return M
