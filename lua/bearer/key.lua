--- bearer.key: keys whose secret lives in C memory, and the registry of
-- key schemes.
--
--   local key = bearer.key(secret [, { scheme = "overten" }])   -- raises on a bad secret
--   local key, err = bearer.key.from_env("OVERTEN_API_KEY", { scheme = "overten" })
--   local key, err = bearer.key.from_file(path [, { scheme = }])
--
-- A scheme is data an API module declares in a module of its own
-- (bearer.overten.schemes, also its endpoints' `schemes`): { name =,
-- prefix =, alphabet = "alnum" | "urlsafe" | "b64url" | "b64token",
-- length = (of what follows the prefix), jwt =, expect = (the rule in
-- words) }. C checks a secret against the rule it is
-- handed and knows no scheme by name. Without `scheme`, the first scheme
-- whose prefix the secret has is used, else "token" (no format, only the
-- header rules).

--- A key: secret memory in C, never shown (bearer.Key, a userdata).
---@class bearer.Key
---@field prefix fun(self: bearer.Key): string what may be shown: `sk_live_4aT7`, or ""
---@field scheme fun(self: bearer.Key): string the scheme's name (`token` when none)
---@field fingerprint fun(self: bearer.Key): string lower-case hex SHA-256 of the secret
---@field expires_at fun(self: bearer.Key): number|nil a firebase token's `exp` (unverified)
---@field reveal fun(self: bearer.Key): string the secret as a Lua string (it then lives in the heap)
---@field close fun(self: bearer.Key) wipes and unmaps the secret (also at GC and `<close>`)
---@field is_closed fun(self: bearer.Key): boolean

--- Options of the key constructors.
---@class bearer.KeyOptions
---@field scheme string|nil `overten`, `optiverse`, `firebase`, `webhook`, `token` or registered; default: detected

--- A key scheme: the rule C checks secrets against.
---@class bearer.KeyScheme
---@field name string a word of at most 23 characters
---@field prefix string|nil what every secret starts with (also what detection looks for)
---@field alphabet "alnum"|"urlsafe"|"b64url"|"b64token"|nil the characters after the prefix
---@field length integer|nil the exact length after the prefix
---@field jwt boolean|nil a JWT: three base64url parts, the payload a JSON object
---@field expect string|nil the rule in words, for error messages

local core = require "bearer.core"

--- `require "bearer.key"`, also callable: `bearer.key(secret [, opts])`.
---@class bearer.key
---@overload fun(secret: string, opts: bearer.KeyOptions|nil): bearer.Key
local M = {}

-- Where each known scheme is declared, loaded on first use: a scheme name
-- works without its API module required first, and detection sees every
-- scheme. The scheme lists are modules of their own (a key loads no
-- endpoint tables). A third API adds its line here, or calls
-- bearer.key.register.
local HOMES = {
  overten = "bearer.overten.schemes",
  webhook = "bearer.overten.schemes",
  firebase = "bearer.overten.schemes",
  optiverse = "bearer.optiverse.schemes",
}

local rules = {}      -- name -> rule, as loaded or registered
local detect          -- every rule with a prefix, in name order; nil: to be built

local ALPHABETS = { alnum = true, urlsafe = true, b64url = true, b64token = true }

local function check_rule(rule, level)
  local function bad(why) error("bad scheme to 'register' (" .. why .. ")", level + 2) end
  if type(rule) ~= "table" then bad("table expected, got " .. type(rule)) end
  if type(rule.name) ~= "string" or not rule.name:find("^[%w_]+$") or #rule.name > 23 then
    bad("name: a word of at most 23 characters expected")
  end
  if rule.name == "token" then bad("'token' is the plain scheme") end
  if rule.prefix ~= nil and (type(rule.prefix) ~= "string" or #rule.prefix > 23) then
    bad("prefix: a string of at most 23 characters expected")
  end
  if rule.alphabet ~= nil and not ALPHABETS[rule.alphabet] then
    bad("alphabet: alnum, urlsafe, b64url or b64token expected")
  end
  if rule.length ~= nil and not (type(rule.length) == "number" and rule.length >= 1
                                 and rule.length % 1 == 0) then
    bad("length: a positive integer expected")
  end
  if rule.expect ~= nil and (type(rule.expect) ~= "string" or #rule.expect > 95) then
    bad("expect: a string of at most 95 characters expected")
  end
end

local function load_home(module)
  for _, rule in ipairs(require(module)) do
    if rules[rule.name] == nil then
      check_rule(rule, 1)
      rules[rule.name] = rule
    end
  end
end

local function rule_of(name)
  if rules[name] == nil and HOMES[name] then load_home(HOMES[name]) end
  return rules[name]
end

local function detection()
  if not detect then
    for _, module in pairs(HOMES) do load_home(module) end
    detect = {}
    for _, rule in pairs(rules) do
      if rule.prefix and rule.prefix ~= "" then detect[#detect + 1] = rule end
    end
    table.sort(detect, function(a, b) return a.name < b.name end)
  end
  return detect
end

-- The options C takes, from the caller's `{ scheme = name }`.
local function c_options(opts, fname)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #2 to '%s' (table expected, got %s)"):format(fname, type(opts)), 3)
  end
  local name = opts and opts.scheme
  if name == nil then return { detect = detection() } end
  if type(name) ~= "string" then
    error(("bad argument #2 to '%s' (option 'scheme' must be a string)"):format(fname), 3)
  end
  if name == "token" then return {} end
  local rule = rule_of(name)
  if not rule then
    error(("bad argument #2 to '%s' (unknown scheme '%s')"):format(fname, name), 3)
  end
  return { scheme = rule }
end

--- bearer.key.new(secret [, { scheme = }]) -> key; raises an error object
-- when the secret breaks its scheme (the caller handed it over).
---@param secret string the secret, handed over by the caller
---@param opts bearer.KeyOptions|nil
---@return bearer.Key
function M.new(secret, opts)
  return core.key_new(secret, c_options(opts, "key"))
end

--- bearer.key.from_env(name [, { scheme = }]) -> key | nil, err (the
-- variable's bytes go straight into the key's memory).
---@param name string the environment variable
---@param opts bearer.KeyOptions|nil
---@return bearer.Key|nil key
---@return bearer.Error|nil err `config` (missing_key, or the rule broken)
function M.from_env(name, opts)
  return core.key_from_env(name, c_options(opts, "from_env"))
end

--- bearer.key.from_file(path [, { scheme = }]) -> key | nil, err (a file
-- group or others may read is refused).
---@param path string a file only its owner may read (chmod 600)
---@param opts bearer.KeyOptions|nil
---@return bearer.Key|nil key
---@return bearer.Error|nil err
function M.from_file(path, opts)
  return core.key_from_file(path, c_options(opts, "from_file"))
end

--- Whether x is a bearer.Key (open or closed).
---@type fun(x: any): boolean
M.is = core.key_is

--- Adds a scheme (an API module of the user's own): a rule table as
-- above. A scheme of the same name is replaced.
---@param rule bearer.KeyScheme
function M.register(rule)
  check_rule(rule, 1)
  rules[rule.name] = rule
  detect = nil
end

return setmetatable(M, {
  __call = function(_, secret, opts) return core.key_new(secret, c_options(opts, "key")) end,
})
