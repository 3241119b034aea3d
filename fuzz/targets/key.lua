--- Fuzz target "key": key construction for every scheme and every source.
-- Input: byte 1 picks the scheme (detected, overten, optiverse, firebase,
-- webhook, token) and the source (bearer.key, from_file, from_env); the
-- rest is the secret. A refused secret must give an error object that does
-- not quote it; an accepted one must print without its hidden part.
local common = require "targets.common"

-- {================ bearer API used by this target
local bearer = require "bearer"
local SOURCES = {
  function(secret, opts) return bearer.key(secret, opts) end,
  function(path, opts) return bearer.key.from_file(path, opts) end,
  function(var, opts) return bearer.key.from_env(var, opts) end,
}
local OTHER = bearer.key("fuzz-other-token-0123456789", { scheme = "token" })
local function key_methods(k)
  return tostring(k), k:prefix(), k:scheme(), k:fingerprint(), k:expires_at(), k == OTHER
end
local function key_close(k) k:close() end
-- }================

local SCHEMES = { false, "overten", "optiverse", "firebase", "webhook", "token" }
local VAR = "BEARER_FUZZ_KEY"
local PATH = os.tmpname()
os.execute("chmod 600 " .. PATH)   -- once: rewriting the file keeps its mode

return function(data)
  local sel = data:byte(1) or 0
  local secret = data:sub(2)
  local scheme = SCHEMES[sel % #SCHEMES + 1]
  local opts = scheme and { scheme = scheme } or nil
  local source = (sel // #SCHEMES) % #SOURCES + 1
  local arg = secret
  if source == 2 then
    local f = assert(io.open(PATH, "wb"))
    f:write(secret)
    f:close()
    arg = PATH
  elseif source == 3 then
    if secret:find("\0", 1, true) then return end   -- getenv cannot hold a NUL
    fuzz.setenv(VAR, secret)
    arg = VAR
  end
  local k, err = common.call("key source " .. source, SOURCES[source], arg, opts)
  -- a secret long enough not to match words of the message by chance
  local quoted = (#secret >= 16 and not secret:find("[%s%c]")) and secret or nil
  if k == nil then
    if err == nil then error("no key and no error", 0) end
    if type(err) == "table" then common.check_error(err, quoted, "key") end
    return
  end
  local shown = key_methods(k)
  if quoted and shown:find(quoted, 1, true) then
    error("tostring shows the whole secret: " .. shown, 0)
  end
  key_close(k)
  if tostring(k) ~= "bearer.Key(closed)" then error("closed key prints " .. tostring(k), 0) end
end
