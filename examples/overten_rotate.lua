-- Zero-downtime rotation of an Overten API key: mint a new key, check it
-- works, hand it to deploy(), and only then revoke the old one. If the
-- check or deploy fails, the new key is revoked and the old one stays.
--
--   OVERTEN_API_KEY=sk_live_... FIREBASE_ID_TOKEN=... lua5.4 examples/overten_rotate.lua
--
-- `make demo` runs it against the local emulator, with an unsigned token
-- for the seeded org's owner (uid "emu_owner").
local bearer = require "bearer"
local overten = require "bearer.overten"

local base_url = os.getenv("OVERTEN_BASE_URL") or overten.DEFAULT_BASE_URL

local function firebase_token()
  local token = os.getenv("FIREBASE_ID_TOKEN")
  if token then return token end
  return nil, "set FIREBASE_ID_TOKEN to a Firebase ID token"
end

-- The key in use now (OVERTEN_API_KEY) and what it belongs to.
local current = overten.client{ base_url = base_url }
local org = assert(current:verify())
print("org:        ", org.org_id, "key " .. org.key_prefix .. "... (" .. tostring(org.key_id) .. ")")

-- Where the running service reads its key from; here, a variable.
local deployed_key
local function deploy(key, info)
  print("deploying:  ", key, info.key_id)
  deployed_key = key
  return true
end

local admin = overten.admin{ token_provider = firebase_token, base_url = base_url }
local new = assert(admin:rotate_key(org.org_id, org.key_id, { name = "primary-2", deploy = deploy }))
print("rotated to: ", new.secret, new.key_id)

-- The old key is refused at once, the deployed one works.
local _, err = current:verify()
print("old key:    ", err and (err.kind .. " " .. tostring(err.status) .. " " .. err.code) or "still works?!")
local fresh = overten.client{ api_key = deployed_key, base_url = base_url }
print("new key:    ", assert(fresh:verify()).key_prefix)
assert(err and err.status == 401, "the old key should be revoked")
assert(bearer.key.is(deployed_key))
