--- Fuzz target "webhook": signature verification of a webhook delivery.
-- Input: "<secret>\255<body>\255<signature header>\255<timestamp header>".
-- Every outcome must be true or a "signature"/"decode" error object; a
-- correct signature (made with sign) over the same bytes must verify.
local common = require "targets.common"

-- {================ bearer API used by this target
local core = require "bearer.core"
local webhook = require "bearer.overten.webhook"
local function verify_core(secret, body, sig, ts, now)
  return core.webhook_verify(secret, body, sig, ts, 300, now)
end
local function verify_headers(secret, body, headers, now)
  return webhook.verify{ secret = secret, body = body, headers = headers, now = now }
end
local function sign(secret, ts, body) return core.webhook_sign(secret, ts, body) end
-- }================

local NOW = 1700000000

return function(data)
  local p = common.split(data, 4)
  local secret, body, sig, ts = p[1], p[2], p[3], p[4]
  local ok, err = common.call("webhook_verify", verify_core, secret, body, sig, ts, NOW)
  if not ok and type(err) == "table" then common.check_error(err, nil, "webhook_verify") end
  local event
  event, err = common.call("webhook.verify", verify_headers, secret, body,
                           { ["x-overten-signature"] = sig, ["X-Overten-Timestamp"] = ts }, NOW)
  if event == nil and type(err) == "table" then common.check_error(err, nil, "webhook.verify") end
  -- the genuine signature of these bytes verifies whenever the timestamp is fresh
  local good = sign(secret, tostring(NOW), body)
  if core.webhook_verify(secret, body, sig .. "," .. good, tostring(NOW), 300, NOW) ~= true then
    error("a correct signature next to another entry was refused", 0)
  end
end
