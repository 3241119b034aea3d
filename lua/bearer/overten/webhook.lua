--- bearer.overten.webhook: checks and builds Overten webhook signatures.
--
-- Overten signs "{timestamp}.{raw_body}" with HMAC-SHA256 under the
-- secret as given (`whsec_…` prefix included) and sends
--   X-Overten-Signature: sha256=<hex>   X-Overten-Timestamp: <unix seconds>
-- The separator is an assumption (the docs were cut off there; README).
-- The HMAC and the constant-time comparison happen in C (bearer.crypto).
local bearer = require "bearer"
local errors = require "bearer.error"
local json = require "bearer.json"
local util = require "bearer.overten.util"

local M = {}

M.TOLERANCE = 300
M.SIGNATURE_HEADER = "X-Overten-Signature"
M.TIMESTAMP_HEADER = "X-Overten-Timestamp"
M.EVENT_HEADER = "X-Overten-Event"

local function check_secret(fname, secret)
  if type(secret) ~= "string" and not bearer.key.is(secret) then
    util.bad_option("secret", fname, "string or bearer.Key", type(secret))
  end
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

--- overten.webhook.verify{ secret=, body=, signature=, timestamp=
--    [, headers=] [, tolerance=300] [, now=] } -> event | nil, err
-- `signature`/`timestamp` may instead come from `headers` (any case).
-- Errors: kind "signature" (code bad_signature, stale_timestamp,
-- malformed), or kind "decode" when a correctly signed body is not JSON.
function M.verify(opts)
  if type(opts) ~= "table" then util.bad_arg(1, "verify", "table", type(opts)) end
  check_secret("verify", opts.secret)
  local body = util.opt(opts, "body", "string", "verify", true)
  local headers = util.opt(opts, "headers", "table", "verify")
  local sig, ts = opts.signature, opts.timestamp
  if headers then
    sig = sig or header(headers, M.SIGNATURE_HEADER)
    ts = ts or header(headers, M.TIMESTAMP_HEADER)
  end
  if sig ~= nil and type(sig) ~= "string" then util.bad_option("signature", "verify", "string", type(sig)) end
  if type(ts) == "number" then ts = ("%d"):format(math.floor(ts)) end
  if ts ~= nil and type(ts) ~= "string" then util.bad_option("timestamp", "verify", "string", type(ts)) end
  local tolerance = util.opt(opts, "tolerance", "number", "verify") or M.TOLERANCE
  local now = util.opt(opts, "now", "number", "verify") or os.time()
  local ok, err = bearer.crypto.webhook_verify(opts.secret, body, sig, ts, tolerance, now)
  if not ok then return nil, err end
  local event, why = json.decode(body)
  if type(event) ~= "table" then
    return nil, errors.new{ kind = "decode", code = "invalid_json",
      message = "webhook body is signed but is not a JSON object: " .. tostring(why or type(event)) }
  end
  return event
end

--- overten.webhook.sign{ secret=, body= [, timestamp=now] [, event=] } -> headers
-- The headers Overten would send with `body`, for tests and local tools.
function M.sign(opts)
  if type(opts) ~= "table" then util.bad_arg(1, "sign", "table", type(opts)) end
  check_secret("sign", opts.secret)
  local body = util.opt(opts, "body", "string", "sign", true)
  local ts = opts.timestamp or os.time()
  if type(ts) == "number" then ts = ("%d"):format(math.floor(ts)) end
  if type(ts) ~= "string" then util.bad_option("timestamp", "sign", "number or string", type(ts)) end
  local headers = {
    [M.SIGNATURE_HEADER] = bearer.crypto.webhook_sign(opts.secret, ts, body),
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
