--- Fuzz target "jwt": the JWT `exp` scanner, reached the way users reach
-- it: a firebase key. Input: the payload's bytes (any JSON, or not), which
-- become the middle part of "<header>.<payload>.<signature>" in base64url.
-- With the first byte odd the input is the whole token instead.
local common = require "targets.common"

-- {================ bearer API used by this target
local bearer = require "bearer"
local function firebase_key(token) return bearer.key(token, { scheme = "firebase" }) end
local function expiry(k) return k:expires_at() end
local function key_close(k) k:close() end
-- }================

local HEADER = fuzz.b64url('{"alg":"RS256","typ":"JWT"}')

return function(data)
  local token
  if (data:byte(1) or 0) % 2 == 1 then
    token = data:sub(2)
  else
    token = HEADER .. "." .. fuzz.b64url(data:sub(2)) .. ".c2lnbmF0dXJl"
  end
  local k, err = common.call("firebase key", firebase_key, token)
  if k == nil then
    if type(err) == "table" then common.check_error(err, nil, "jwt") end
    return
  end
  local exp = expiry(k)
  if exp ~= nil and type(exp) ~= "number" then error("expires_at is a " .. type(exp), 0) end
  key_close(k)
end
