--- bearer.overten.webhook: checks and builds Overten webhook signatures.
--
-- Overten signs "{timestamp}.{raw_body}" with HMAC-SHA256 under the
-- secret as given (`whsec_…` prefix included) and sends
--   X-Overten-Signature: sha256=<hex>   X-Overten-Timestamp: <unix seconds>
-- The separator is an assumption (the docs were cut off there; docs/decisions.md).
-- This file owns that format; the HMAC and the constant-time comparison
-- happen in C (bearer.crypto), so the expected digest never becomes a Lua
-- string.
local bearer = require "bearer"
local errors = require "bearer.error"
local json = require "bearer.json"
local check = require "bearer.check"

--- Options of `overten.webhook.verify{...}`.
---@class bearer.overten.VerifyOptions
---@field secret string|bearer.Key the subscription's or the org's webhook secret
---@field body string the raw body
---@field signature string|nil X-Overten-Signature
---@field timestamp string|number|nil X-Overten-Timestamp
---@field headers table<string, string>|nil where to find both (any case)
---@field tolerance number|nil seconds (default 300)
---@field now number|nil wall-clock seconds

---@class bearer.overten.webhook
local M = {}

M.TOLERANCE = 300
M.SIGNATURE_HEADER = "X-Overten-Signature"
M.TIMESTAMP_HEADER = "X-Overten-Timestamp"
M.EVENT_HEADER = "X-Overten-Event"

-- What verify and sign both take: a table with the secret and the body
-- (raises at their caller). Returns the body.
local function signing_options(opts, fname)
  if type(opts) ~= "table" then check.bad_arg(1, fname, "table", type(opts), 2) end
  if type(opts.secret) ~= "string" and not bearer.key.is(opts.secret) then
    check.bad_option("secret", fname, "string or bearer.Key", type(opts.secret), 2)
  end
  check.field(fname, "body", opts.body, { "string", required = true }, 2)
  return opts.body
end

-- Unix seconds as the header writes them.
local function unix_text(ts)
  if type(ts) == "number" then return ("%d"):format(math.floor(ts)) end
  return ts
end

-- An option of the right type (raises at the caller of verify or sign).
local function opt(opts, name, want, fname, required)
  check.field(fname, name, opts[name], { want, required = required }, 2)
  return opts[name]
end

-- A header from a table whose names may have any case; repeated headers
-- (lists) are joined with commas as HTTP allows.
local function header(headers, name)
  local want = name:lower()
  for k, v in pairs(headers) do
    if type(k) == "string" and k:lower() == want then
      if type(v) == "table" then return table.concat(v, ",") end
      return v
    end
  end
end

-- The string Overten signs.
local function signed_string(timestamp, body) return timestamp .. "." .. body end

local function check_secret_arg(n, fname, secret)
  if type(secret) ~= "string" and not (bearer.key.is(secret) and not secret:is_closed()) then
    check.bad_arg(n, fname, "bearer.Key (open) or string",
                  bearer.key.is(secret) and "a closed key" or type(secret), 2)
  end
end

--- overten.webhook.signature(secret, timestamp, body) -> "sha256=<hex>"
---@param secret string|bearer.Key
---@param timestamp string
---@param body string the raw body
---@return string signature `sha256=<hex>`
function M.signature(secret, timestamp, body)
  check_secret_arg(1, "signature", secret)
  if type(timestamp) ~= "string" then check.bad_arg(2, "signature", "string", type(timestamp)) end
  if type(body) ~= "string" then check.bad_arg(3, "signature", "string", type(body)) end
  return "sha256=" .. bearer.crypto.hmac_sha256_hex(secret, signed_string(timestamp, body))
end

local function signature_error(code, message)
  return nil, errors.new{ kind = "signature", code = code, message = message }
end

--- overten.webhook.check(secret, body, signature, timestamp, tolerance, now)
-- -> true | nil, err: the signature rules alone, on the header values.
-- The signature header may list several `sha256=<hex>` entries separated
-- by commas (a secret being rotated); any match is enough. Errors: kind
-- "signature", code malformed, bad_signature or stale_timestamp.
---@param secret string|bearer.Key
---@param body string
---@param signature string|nil
---@param timestamp string|nil
---@param tolerance number seconds
---@param now number wall-clock seconds
---@return true|nil ok
---@return bearer.Error|nil err
function M.check(secret, body, signature, timestamp, tolerance, now)
  check_secret_arg(1, "check", secret)
  if type(body) ~= "string" then check.bad_arg(2, "check", "string", type(body)) end
  if type(tolerance) ~= "number" then check.bad_arg(5, "check", "number", type(tolerance)) end
  if type(now) ~= "number" then check.bad_arg(6, "check", "number", type(now)) end
  if type(signature) ~= "string" or signature == "" then
    return signature_error("malformed", "no signature header")
  end
  if type(timestamp) ~= "string" or not timestamp:find("^%d+$") or #timestamp > 15 then
    return signature_error("malformed", "timestamp header missing or not unix seconds")
  end
  local candidates = {}
  for entry in (signature .. ","):gmatch("([^,]*),") do
    local hex = entry:match("^%s*[sS][hH][aA]256=(%x+)%s*$")
    if hex and #hex == 64 then candidates[#candidates + 1] = hex:lower() end
  end
  if #candidates == 0 then return signature_error("malformed", "signature is not sha256=<hex>") end
  if not bearer.crypto.hmac_sha256_matches(secret, signed_string(timestamp, body), candidates) then
    return signature_error("bad_signature", "signature does not match the body")
  end
  local age = now - tonumber(timestamp)
  if age > tolerance then
    return signature_error("stale_timestamp", "timestamp is older than the tolerance")
  elseif -age > tolerance then
    return signature_error("stale_timestamp", "timestamp is too far in the future")
  end
  return true
end

-- A delivery accepted once is refused while its signature could still
-- pass: `replay` (a redis:// URL, an nginx lua_shared_dict name, or a
-- store with claim()) keeps its mark for twice the tolerance, so hosts
-- whose clocks differ by up to the tolerance still see it. The mark is
-- the signature our secret gives (public: it came in a header), never
-- the secret.
local function first_delivery(opts, timestamp, body, tolerance)
  local store = require("bearer.redis").claims(opts.replay, "overten-webhook", "verify", "replay", 3,
                                               opts.replay_timeout)
  local mark = bearer.crypto.hmac_sha256_hex(opts.secret, signed_string(timestamp, body))
  local first, err = store:claim(mark, 2 * tolerance, require("bearer.redis").token())
  if first == nil then return nil, err end
  if not first then
    return signature_error("replayed", "this delivery was already accepted within the tolerance window")
  end
  return true
end

--- overten.webhook.verify{ secret=, body=, signature=, timestamp=
--    [, headers=] [, tolerance=300] [, now=] [, replay=] [, replay_timeout=5] }
--    -> event | nil, err
-- `signature`/`timestamp` may instead come from `headers` (any case).
-- Errors: kind "signature" (code bad_signature, stale_timestamp,
-- malformed, replayed), kind "decode" when a correctly signed body is not
-- JSON, kind "connection" (code store_unavailable) when the replay store
-- fails.
---@param opts table
---@return table|nil event, table|nil err
function M.verify(opts)
  local body = signing_options(opts, "verify")
  local headers = opt(opts, "headers", "table", "verify")
  local sig, ts = opts.signature, opts.timestamp
  if headers then
    sig = sig or header(headers, M.SIGNATURE_HEADER)
    ts = ts or header(headers, M.TIMESTAMP_HEADER)
  end
  if sig ~= nil and type(sig) ~= "string" then check.bad_option("signature", "verify", "string", type(sig)) end
  ts = unix_text(ts)
  if ts ~= nil and type(ts) ~= "string" then check.bad_option("timestamp", "verify", "string", type(ts)) end
  local tolerance = opt(opts, "tolerance", "number", "verify") or M.TOLERANCE
  local replay = opts.replay
  if replay ~= nil and type(replay) ~= "string" and not (type(replay) == "table" and replay.claim) then
    check.bad_option("replay", "verify", "redis:// URL, shared dict name or store", type(replay))
  end
  local replay_timeout = opt(opts, "replay_timeout", "number", "verify")
  if replay_timeout ~= nil and not (replay_timeout > 0 and replay_timeout < 86400) then
    check.bad_option("replay_timeout", "verify", "seconds (0 < t < 86400)", tostring(replay_timeout))
  end
  local now = opt(opts, "now", "number", "verify") or os.time()
  local ok, err = M.check(opts.secret, body, sig, ts, tolerance, now)
  if not ok then return nil, err end
  local event, why = json.decode(body)
  if type(event) ~= "table" then
    return nil, errors.new{ kind = "decode", code = "invalid_json",
      message = "webhook body is signed but is not a JSON object: " .. tostring(why or type(event)) }
  end
  if opts.replay ~= nil then
    local first, rerr = first_delivery(opts, ts, body, tolerance)
    if not first then return nil, rerr end
  end
  return event
end

--- overten.webhook.sign{ secret=, body= [, timestamp=now] [, event=] } -> headers
-- The headers Overten would send with `body`, for tests and local tools.
---@param opts { secret: string|bearer.Key, body: string, timestamp: number|string|nil, event: string|nil }
---@return table<string, string> headers
function M.sign(opts)
  local body = signing_options(opts, "sign")
  local ts = unix_text(opts.timestamp or os.time())
  if type(ts) ~= "string" then check.bad_option("timestamp", "sign", "number or string", type(ts)) end
  local headers = {
    [M.SIGNATURE_HEADER] = M.signature(opts.secret, ts, body),
    [M.TIMESTAMP_HEADER] = ts,
    ["Content-Type"] = "application/json",
  }
  local event = opts.event
  if event == nil then
    local doc = json.decode(body)
    event = type(doc) == "table" and type(doc.event) == "string" and doc.event or nil
  end
  if event ~= nil then headers[M.EVENT_HEADER] = tostring(event) end
  return headers
end

return M
