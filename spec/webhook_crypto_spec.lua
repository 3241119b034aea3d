-- Webhook signatures: the C primitives (HMAC-SHA256, a constant-time
-- match that keeps the digest in C) and the Overten rules built on them
-- in bearer.overten.webhook (HMAC-SHA256 over "{timestamp}.{raw_body}").
local bearer = require "bearer"
local core = require "bearer.core"
local webhook = require "bearer.overten.webhook"

local SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Njc4OTA="
local BODY = '{"event":"run.completed","run_id":"run_1"}'
local NOW = 1800000000

describe("webhook signatures #unit", function()
  it("matches HMAC-SHA256 test vectors", function()
    -- RFC 4231 test case 2
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                 core.hmac_sha256_hex("Jefe", "what do ya want for nothing?"))
    assert.equal("sha256=" .. core.hmac_sha256_hex(SECRET, "1800000000." .. BODY),
                 webhook.signature(SECRET, "1800000000", BODY))
  end)

  it("signs and verifies with a key or a string, any hex case", function()
    local key = bearer.key(SECRET)
    local sig = webhook.signature(key, tostring(NOW), BODY)
    assert.equal(sig, webhook.signature(SECRET, tostring(NOW), BODY))
    assert.is_true(webhook.check(key, BODY, sig, tostring(NOW), 300, NOW))
    assert.is_true(webhook.check(SECRET, BODY, "SHA256=" .. sig:sub(8):upper(), tostring(NOW), 300, NOW))
    -- several entries (a rotation): one match is enough
    assert.is_true(webhook.check(SECRET, BODY, "sha256=" .. string.rep("0", 64) .. ", " .. sig,
                                       tostring(NOW), 300, NOW))
  end)

  local function code(...)
    local ok, err = webhook.check(...)
    assert.is_nil(ok)
    assert.equal("signature", err.kind)
    return err.code
  end

  it("names what failed", function()
    local sig = webhook.signature(SECRET, tostring(NOW), BODY)
    assert.equal("bad_signature", code(SECRET, BODY .. " ", sig, tostring(NOW), 300, NOW))
    assert.equal("bad_signature", code("whsec_other", BODY, sig, tostring(NOW), 300, NOW))
    assert.equal("bad_signature", code(SECRET, BODY, sig, tostring(NOW + 1), 300, NOW))
    assert.equal("stale_timestamp", code(SECRET, BODY, webhook.signature(SECRET, tostring(NOW - 301), BODY),
                                         tostring(NOW - 301), 300, NOW))
    assert.equal("stale_timestamp", code(SECRET, BODY, webhook.signature(SECRET, tostring(NOW + 301), BODY),
                                         tostring(NOW + 301), 300, NOW))
    assert.is_true(webhook.check(SECRET, BODY, webhook.signature(SECRET, tostring(NOW - 300), BODY),
                                       tostring(NOW - 300), 300, NOW))
    assert.equal("malformed", code(SECRET, BODY, nil, tostring(NOW), 300, NOW))
    assert.equal("malformed", code(SECRET, BODY, "", tostring(NOW), 300, NOW))
    assert.equal("malformed", code(SECRET, BODY, sig:sub(8), tostring(NOW), 300, NOW))
    assert.equal("malformed", code(SECRET, BODY, "sha256=xyz", tostring(NOW), 300, NOW))
    assert.equal("malformed", code(SECRET, BODY, sig, nil, 300, NOW))
    assert.equal("malformed", code(SECRET, BODY, sig, "12a", 300, NOW))
    assert.equal("malformed", code(SECRET, BODY, sig, "-5", 300, NOW))
  end)

  it("matches in C without handing the digest out", function()
    local mac = core.hmac_sha256_hex(SECRET, BODY)
    local key = bearer.key(SECRET)
    assert.is_true(bearer.crypto.hmac_sha256_matches(key, BODY, { string.rep("0", 64), mac }))
    assert.is_false(bearer.crypto.hmac_sha256_matches(SECRET, BODY, { mac:sub(2), 42, mac:upper() }))
    assert.is_false(bearer.crypto.hmac_sha256_matches(SECRET, BODY, {}))
    assert.is_nil(core.webhook_sign)
    assert.is_nil(core.webhook_verify)
    assert.is_nil(core.constant_time_equal)
    assert.has_error(function() bearer.crypto.hmac_sha256_matches(SECRET, BODY) end)
  end)

  it("raises for a secret of the wrong type", function()
    assert.has_error(function() webhook.signature(42, "1", "b") end)
    local k = bearer.key(SECRET)
    k:close()
    assert.has_error(function() webhook.check(k, "b", "s", "1", 300, 1) end)
  end)
end)
