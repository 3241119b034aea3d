-- Zero-downtime rotation of an Overten API key: mint a new key, check it
-- works, hand it to deploy(), and only then revoke the old one. If the
-- check or deploy fails, the new key is revoked and the old one stays.
--
--   OVERTEN_API_KEY=sk_live_... FIREBASE_ID_TOKEN=... lua5.4 examples/overten_rotate.lua
--
-- Against the local emulator FIREBASE_ID_TOKEN may be unset (see
-- overten_signup.lua); the seeded org belongs to the uid "emu_owner".
local bearer = require "bearer"
local overten = require "bearer.overten"
local cjson = require "cjson"

local base_url = os.getenv("OVERTEN_BASE_URL") or overten.DEFAULT_BASE_URL

local function b64url(s)
  local abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  return (s:gsub("..?.?", function(chunk)
    local a, b, c = chunk:byte(1, 3)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local out = ""
    for j = 1, #chunk + 1 do
      local idx = math.floor(n / 64 ^ (4 - j)) % 64
      out = out .. abc:sub(idx + 1, idx + 1)
    end
    return out
  end))
end

local function firebase_token()
  local token = os.getenv("FIREBASE_ID_TOKEN")
  if token then return token end
  if not base_url:find("^http://127%.0%.0%.1[:/]") then
    return nil, "set FIREBASE_ID_TOKEN (only the local emulator accepts a made-up token)"
  end
  local claims = cjson.encode{ sub = "emu_owner", exp = os.time() + 3600 }
  return b64url('{"alg":"none","typ":"JWT"}') .. "." .. b64url(claims) .. ".ZW11bGF0b3I"
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
