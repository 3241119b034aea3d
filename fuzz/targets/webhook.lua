--- Fuzz target "webhook": signature verification of a webhook delivery
-- (overten.webhook: the header rules in Lua, HMAC and the constant-time
-- match in C). Input: "<secret>\255<body>\255<signature>\255<timestamp>".
-- Every outcome must be true/an event or a "signature"/"decode" error
-- object; the genuine signature of the same bytes, listed next to the
-- fuzzed one, must verify.
local common = require "targets.common"

-- {================ bearer API used by this target
local webhook = require "bearer.overten.webhook"
local function check(secret, body, sig, ts, now) return webhook.check(secret, body, sig, ts, 300, now) end
local function verify_headers(secret, body, headers, now)
  return webhook.verify{ secret = secret, body = body, headers = headers, now = now }
end
local function signature(secret, ts, body) return webhook.signature(secret, ts, body) end
-- }================

local NOW = 1700000000

return function(data)
  local p = common.split(data, 4)
  local secret, body, sig, ts = p[1], p[2], p[3], p[4]
  local ok, err = common.call("webhook.check", check, secret, body, sig, ts, NOW)
  if not ok and type(err) == "table" then common.check_error(err, nil, "webhook.check") end
  local event
  event, err = common.call("webhook.verify", verify_headers, secret, body,
                           { ["x-overten-signature"] = sig, ["X-Overten-Timestamp"] = ts }, NOW)
  if event == nil and type(err) == "table" then common.check_error(err, nil, "webhook.verify") end
  local good = common.call("webhook.signature", signature, secret, tostring(NOW), body)
  if good and check(secret, body, sig .. "," .. good, tostring(NOW), NOW) ~= true then
    error("a correct signature next to another entry was refused", 0)
  end
end
