--- Fuzz target "redact": the one path trace lines and server text take.
-- Input: "<secret>\255<text>". The secret becomes a token key when it is a
-- valid one; the redacted text must then hold no copy of it.
local common = require "targets.common"

-- {================ bearer API used by this target
local bearer = require "bearer"
local core = require "bearer.core"
local function token_key(secret) return bearer.key(secret, { scheme = "token" }) end
local function redact(text, k) return core.redact(text, k) end
local function key_close(k) k:close() end
-- }================

local KEPT = "authorization proxy-authorization x-api-key cookie set-cookie"

return function(data)
  local parts = common.split(data, 2)
  local secret, text = parts[1], parts[2]
  local ok, k = pcall(token_key, secret)
  if not ok then k = nil end
  local out = redact(text, k)
  if type(out) ~= "string" then error("redact returned a " .. type(out), 0) end
  -- "[REDACTED]", and the names and colons of the lines whose values are
  -- hidden, stay in the text: a secret spelled by them may show there.
  if k and not secret:find("[%[%]REDACT :]") and not KEPT:find(secret:lower(), 1, true)
     and out:find(secret, 1, true) then
    error("the secret survives redaction", 0)
  end
  if redact(text) == nil then error("redact without a key failed", 0) end
  if k then key_close(k) end
end
