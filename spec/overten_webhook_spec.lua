-- Overten webhooks: signature verification and signing (C underneath),
-- subscriptions, and real signed deliveries from the emulator.
local bearer = require "bearer"
local core = require "bearer.core"
local overten = require "bearer.overten"
local emulator = require "support.emulator"

local webhook = overten.webhook
local SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Njc4OTA="
local BODY = '{"event":"run.completed","run_id":"run_1","task_id":"task_1","summary":null}'
local NOW = 1800000000

describe("bearer.overten.webhook #unit", function()
  local function signed(opts)
    local h = webhook.sign{ secret = opts.sign_secret or SECRET, body = opts.sign_body or BODY,
                            timestamp = opts.timestamp or NOW }
    return webhook.verify{ secret = opts.secret or SECRET, body = opts.body or BODY,
                           signature = opts.signature or h["X-Overten-Signature"],
                           timestamp = h["X-Overten-Timestamp"], now = opts.now or NOW,
                           tolerance = opts.tolerance }
  end

  local function fails(code, ...)
    local ev, err = ...
    assert.is_nil(ev)
    assert.equal("signature", err.kind)
    assert.equal(code, err.code)
  end

  it("signs like the API and verifies into the event table", function()
    local h = webhook.sign{ secret = SECRET, body = BODY, timestamp = NOW }
    assert.equal("sha256=" .. core.hmac_sha256_hex(SECRET, NOW .. "." .. BODY), h["X-Overten-Signature"])
    assert.equal(tostring(NOW), h["X-Overten-Timestamp"])
    assert.equal("application/json", h["Content-Type"])
    assert.equal("run.completed", h["X-Overten-Event"])
    local ev = assert(signed{})
    assert.equal("run_1", ev.run_id)
    assert.is_nil(ev.summary)   -- JSON null reads as absent
  end)

  it("accepts a key as the secret, any hex case, and headers of any case", function()
    local h = webhook.sign{ secret = SECRET, body = BODY, timestamp = NOW }
    assert(webhook.verify{ secret = bearer.key(SECRET), body = BODY, now = NOW,
                           signature = h["X-Overten-Signature"]:upper():gsub("^SHA256", "sha256"),
                           timestamp = h["X-Overten-Timestamp"] })
    assert(webhook.verify{ secret = SECRET, body = BODY, now = NOW,
      headers = { ["x-overten-signature"] = h["X-Overten-Signature"], ["X-OVERTEN-TIMESTAMP"] = tostring(NOW) } })
  end)

  it("rejects a tampered body and a wrong secret", function()
    fails("bad_signature", signed{ body = BODY:gsub("run_1", "run_2") })
    fails("bad_signature", signed{ secret = "whsec_other" })
    fails("bad_signature", signed{ sign_secret = SECRET:sub(7) })   -- the prefix is part of the key
  end)

  it("rejects stale and future timestamps outside the tolerance", function()
    fails("stale_timestamp", signed{ timestamp = NOW - 301 })
    fails("stale_timestamp", signed{ timestamp = NOW + 301 })
    assert(signed{ timestamp = NOW - 300 })
    assert(signed{ timestamp = NOW + 300 })
    fails("stale_timestamp", signed{ timestamp = NOW - 31, tolerance = 30 })
    assert(signed{ timestamp = NOW - 1000, tolerance = 3600 })
  end)

  it("calls missing or garbled headers malformed", function()
    fails("malformed", webhook.verify{ secret = SECRET, body = BODY, timestamp = tostring(NOW), now = NOW })
    fails("malformed", webhook.verify{ secret = SECRET, body = BODY, signature = "sha256=zz",
                                       timestamp = tostring(NOW), now = NOW })
    fails("malformed", webhook.verify{ secret = SECRET, body = BODY, signature = "v1=abc",
                                       timestamp = "soon", now = NOW })
  end)

  it("returns a decode error for a signed body that is not JSON", function()
    local ev, err = signed{ body = "not json", sign_body = "not json" }
    assert.is_nil(ev)
    assert.equal("decode", err.kind)
  end)

  it("raises for caller mistakes", function()
    assert.has_error(function() webhook.verify{ secret = 1, body = BODY } end)
    assert.has_error(function() webhook.verify{ secret = SECRET } end)
    assert.has_error(function() webhook.sign{ secret = SECRET } end)
    assert.has_error(function() webhook.verify("x") end)
  end)
end)

describe("bearer.overten webhooks #integration", function()
  local emu

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() emu:reset() end)

  local function client()
    return overten.client{ api_key = emulator.OVERTEN_KEY, base_url = emu:overten_url(),
                           sleep = function() end, clock = function() return 0 end }
  end

  -- Long-polls the emulator (server side) for `n` entries.
  local function inbox(n)
    return emu:control("GET", "/inbox?count=" .. n .. "&wait=5")
  end
  local function deliveries(n)
    return emu:control("GET", "/overten/deliveries?count=" .. n .. "&wait=5")
  end

  it("creates, lists and deletes subscriptions; the secret is a key shown once", function()
    local c = client()
    local hook = assert(c:create_webhook{ url = "https://example.com/hook", events = { "run.completed" },
                                          description = "prod" })
    assert.truthy(hook.webhook_id:find("^whk_"))
    assert.is_true(bearer.key.is(hook.secret))
    assert.equal("webhook", hook.secret:scheme())
    local listed = {}
    for h in c:webhooks() do listed[#listed + 1] = h end
    assert.equal(1, #listed)
    assert.equal(hook.webhook_id, listed[1].webhook_id)
    assert.is_nil(listed[1].secret)
    assert.is_true(assert(c:delete_webhook(hook.webhook_id)))
    assert.is_nil(c:webhooks()())
    local res, err = c:delete_webhook(hook.webhook_id)
    assert.is_nil(res)
    assert.equal("not_found", err.kind)
    res, err = c:create_webhook{ url = "https://example.com/hook", events = { "run.started" } }
    assert.is_nil(res)
    assert.equal(422, err.status)
    res, err = c:create_webhook{ url = "ftp://x", events = { "run.completed" } }
    assert.is_nil(res)
    assert.equal("invalid_argument", err.code)
  end)

  it("delivers signed events that verify with the subscription's secret", function()
    local c = client()
    local hook = assert(c:create_webhook{ url = emu.url .. "/_emulator/inbox/sub", events = { "run.completed" } })
    local r = assert(c:generate("excel", { prompt = "Q3 sales report" }))
    local got = inbox(1)
    assert.equal(1, #got)
    local d = got[1]
    assert.equal("/_emulator/inbox/sub", d.path)
    assert.equal("Overten-Webhook/1.0", d.headers["user-agent"])
    assert.equal("run.completed", d.headers["x-overten-event"])
    local ev = assert(webhook.verify{ secret = hook.secret, body = d.body, headers = d.headers })
    assert.equal("run.completed", ev.event)
    assert.equal(r.run_id, ev.run_id)
    assert.equal(r.task_id, ev.task_id)
    assert.equal("excel", ev.format)
    local _, err = webhook.verify{ secret = SECRET, body = d.body, headers = d.headers }
    assert.equal("bad_signature", err.code)
  end)

  it("signs a task's own webhook_url with the org's primary secret, and sends run.failed", function()
    local c = client()
    local org = assert(c:verify())
    local q = assert(c:generate("word", { prompt = "memo #fail", async = true,
                                          webhook_url = emu.url .. "/_emulator/inbox/task" }))
    local _, err = c:wait(q.task_id)
    assert.equal("failed", err.code)
    local d = inbox(1)[1]
    local ev = assert(webhook.verify{ secret = org.webhook_secret, body = d.body, headers = d.headers })
    assert.equal("run.failed", ev.event)
    assert.equal(q.task_id, ev.task_id)
    assert.equal("upstream_error", ev.error.code)
  end)

  it("filters by event, refuses non-loopback URLs and retries 5xx", function()
    local c = client()
    assert(c:create_webhook{ url = emu.url .. "/_emulator/inbox/failed-only", events = { "run.failed" } })
    assert(c:create_webhook{ url = "https://example.com/hook", events = { "run.completed" } })
    assert(c:create_webhook{ url = emu.url .. "/_emulator/inbox/flaky?status=503", events = { "run.completed" } })
    assert(c:generate("excel", { prompt = "report" }))
    local log = deliveries(4)
    local refused, flaky, failed_only = 0, 0, 0
    for _, e in ipairs(log) do
      if e.refused then refused = refused + 1; assert.equal("https://example.com/hook", e.url) end
      if e.url:find("flaky", 1, true) then flaky = flaky + 1; assert.equal(503, e.status) end
      if e.url:find("failed-only", 1, true) then failed_only = failed_only + 1 end
    end
    assert.equal(1, refused)
    assert.equal(3, flaky)
    assert.equal(0, failed_only)
  end)
end)
