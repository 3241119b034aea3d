-- Overten's Firebase-authenticated endpoints: POST /signup and
-- /organizations/{org_id}/api-keys. Keys are stored as SHA-256 only; the
-- raw secret is in exactly one response.
--
-- Firebase tokens: any JWT whose payload has a `sub` (or `user_id`) and an
-- `exp` in the future is accepted; the signature is not checked (the
-- emulator has no Google keys). The seeded org belongs to uid "emu_owner".
local common = require "common"
local json = require "json"
local b64 = require "ngx.base64"
local S = require "overten_state"

local M = {}

local function unauthorized(code, message)
  return S.error(401, code, message)
end

-- The Firebase user of a request, or nil and a 401.
function M.authenticate(req)
  local token = common.bearer_token(req.headers)
  if not token then
    return nil, unauthorized("invalid_token", "Missing Firebase ID token: send Authorization: Bearer <token>.")
  end
  if token:sub(1, 8) == "sk_live_" then
    return nil, unauthorized("invalid_token", "This endpoint needs a Firebase ID token, not an API key.")
  end
  local payload = token:match("^[%w_-]+%.([%w_-]+)%.[%w_-]+$")
  local claims = payload and json.decode(b64.decode_base64url(payload) or "")
  local uid = type(claims) == "table" and (claims.sub or claims.user_id)
  if type(uid) ~= "string" or uid == "" then
    return nil, unauthorized("invalid_token", "Malformed Firebase ID token.")
  end
  if type(claims.exp) ~= "number" or claims.exp <= ngx.time() then
    return nil, unauthorized("token_expired", "Firebase ID token has expired.")
  end
  return { uid = uid, email = claims.email }
end

local function key_view(rec, secret)
  return { key_id = rec.key_id, org_id = rec.org_id, name = rec.name, prefix = rec.prefix,
           created_at = rec.created_at, revoked_at = rec.revoked_at,
           last_used_at = rec.last_used_at, secret = secret }
end

local TIERS = { free = true, pro = true, enterprise = true }

local function signup(req, user)
  local body, err = S.json_body(req)
  if not body then return err end
  local name, existing
  name, err = S.text(body, "org_name", 2, 120)
  if err then return err end
  existing, err = S.text(body, "existing_org_id", 1, 200)
  if err then return err end
  local key_name
  key_name, err = S.text(body, "key_name", 1, 80)
  if err then return err end
  local tier = body.tier
  if tier ~= nil and not TIERS[tier] then
    return S.unprocessable("tier", "Input should be 'free', 'pro' or 'enterprise'", "enum")
  end
  if (name == nil) == (existing == nil) then
    return S.bad_request("Send exactly one of org_name and existing_org_id.")
  end
  local org
  if existing then
    org = S.orgs[existing]
    if not org then return S.not_found("Organization", existing) end
    if org.owner ~= user.uid then
      return S.error(403, "forbidden", "Only an owner or admin of " .. existing .. " can enable API access.")
    end
  else
    org = S.new_org{ org_name = name, tier = tier or "free", owner = user.uid }
  end
  local secret = S.new_secret()
  local rec = S.add_key(org, secret, key_name or "default")
  return common.json(201, {
    org_id = org.org_id, org_name = org.org_name, tier = org.tier,
    key_id = rec.key_id, key_name = rec.name, prefix = rec.prefix,
    secret = secret, webhook_secret = org.webhook_secret, created_at = rec.created_at,
  })
end

-- Another user's org answers 404, as for every other resource.
local function owned_org(user, id)
  local org = S.orgs[id]
  if not org or org.owner ~= user.uid then return nil, S.not_found("Organization", id) end
  return org
end

-- The key's name may come as `name` or `key_name` (not documented).
local function create_key(req, user, org_id)
  local org, err = owned_org(user, org_id)
  if not org then return err end
  local body
  body, err = S.json_body(req)
  if not body then return err end
  local field = body.name ~= nil and "name" or "key_name"
  local name
  name, err = S.text(body, field, 1, 80)
  if err then return err end
  local secret = S.new_secret()
  local rec = S.add_key(org, secret, name or "default")
  return common.json(201, key_view(rec, secret))
end

local function list_keys(req, user, org_id)
  local org, err = owned_org(user, org_id)
  if not org then return err end
  local items = {}
  for _, rec in ipairs(S.key_order) do
    if rec.org_id == org.org_id then items[#items + 1] = key_view(rec) end
  end
  return S.page(req, items, "key_id", 100)
end

-- Revoking is immediate and idempotent (a second revoke is 204 again).
local function revoke_key(req, user, org_id, key_id)
  local org, err = owned_org(user, org_id)
  if not org then return err end
  local rec = S.keys_by_id[key_id]
  if not rec or rec.org_id ~= org.org_id then return S.not_found("Key", key_id) end
  if rec.revoked_at == json.null then rec.revoked_at = S.now_iso() end
  return common.response(204, "", "application/json")
end

M.ROUTES = {
  { "POST", "^/signup$", signup, "F" },
  { "POST", "^/organizations/([^/]+)/api%-keys$", create_key, "F" },
  { "GET", "^/organizations/([^/]+)/api%-keys$", list_keys, "F" },
  { "DELETE", "^/organizations/([^/]+)/api%-keys/([^/]+)$", revoke_key, "F" },
}

return M
