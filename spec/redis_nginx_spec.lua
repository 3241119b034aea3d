-- Issue 11 inside nginx: two nginx instances ("hosts"), one key, one Redis
-- store named by bearer.ngx.configure{ store = }; Redis reached through
-- cosockets (hiredis's encoder and reader), never blocking a worker.
local bearer = require "bearer"
local core = require "bearer.core"
local emulator = require "support.emulator"
local cjson = require "cjson"
local webhook = require "bearer.overten.webhook"

local function start_nginx(emu, redis_url)
  return emulator.start({ BEARER_TEST_REDIS_URL = redis_url, BEARER_TEST_OPTIVERSE_URL = emu:optiverse_url(),
                          BEARER_TEST_OPTIVERSE_KEY = emulator.OPTIVERSE_KEY, BEARER_EMULATOR_WORKERS = 2 },
                        emulator.ROOT .. "/spec/nginx/redis.conf.in", 30)
end

describe("two nginx hosts sharing a Redis store #integration", function()
  local emu, redis, a, b
  setup(function()
    emu = emulator.start()
    redis = require("support.redis").start()
    a = start_nginx(emu, redis.url)
    b = start_nginx(emu, redis.url)
  end)
  teardown(function()
    for _, s in ipairs{ a, b } do s:stop() end
    if redis then redis:stop() end
    emu:stop()
  end)
  before_each(function() emu:reset() end)

  it("keeps two nginx instances with one key under the API's limit", function()
    emu:config{ optiverse_poll_limit = { requests = 8, per = 2 } }
    local t0 = core.monotime()
    local outs = bearer.gather{
      function() return a:get_json("/calls?n=10") end,
      function() return b:get_json("/calls?n=10") end,
    }
    local elapsed = core.monotime() - t0
    for i = 1, 2 do
      assert.same({}, outs[i].errors)
      assert.equal(10, outs[i].ok)
    end
    local times, most = emu:arrivals_under("/external-api/", 2)
    assert.equal(20, #times)
    assert.is_true(most <= 8, most .. " arrivals within 2 s")
    for _, s in ipairs{ a, b } do assert.same({}, s:error_lines()) end
    print(("\n    20 calls from 2 nginx at 8 per 2 s: %.1f s, no 429"):format(elapsed))
  end)

  it("answers a replayed webhook 200 without running the handler again, on either host", function()
    local secret = require("spec.nginx.redis_app").WEBHOOK_SECRET
    local body = '{"event":"task.completed","id":"evt_ngx"}'
    local headers = webhook.sign{ secret = secret, body = body }
    local function deliver(host)
      local res = assert(host.http:post("/webhook", { body = body, headers = headers }))
      assert.equal(200, res.status, res.body)
      return cjson.decode(res.body)
    end
    assert.is_nil(deliver(a).replayed)
    assert.is_true(deliver(a).replayed)
    assert.is_true(deliver(b).replayed)
    -- handlers run from a timer, after the answer: wait for the first,
    -- then long enough for a second to show
    local function handled() return a:get_json("/handled").handled + b:get_json("/handled").handled end
    for _ = 1, 100 do
      if handled() > 0 then break end
      core.sleep(0.02)
    end
    core.sleep(0.2)
    assert.equal(1, handled())
    -- with a lua_shared_dict the marks hold for one nginx (its workers)
    local function deliver_dict(host)
      local res = assert(host.http:post("/webhook-dict", { body = body, headers = headers }))
      return cjson.decode(res.body)
    end
    assert.is_nil(deliver_dict(a).replayed)
    assert.is_true(deliver_dict(a).replayed)
    assert.is_nil(deliver_dict(b).replayed)
    -- a bad signature is still a 401, not a replay
    local res, err = b.http:post("/webhook", { body = body .. " ", headers = headers })
    assert.is_nil(res)
    assert.equal(401, err.status)
  end)

  it("answers store_unavailable within the connect timeout when Redis hangs, and 503 to a webhook", function()
    redis:pause()
    local t0 = core.monotime()
    local out = a:get_json("/calls?n=1")
    local hung = core.monotime() - t0
    local secret = require("spec.nginx.redis_app").WEBHOOK_SECRET
    local body = '{"event":"task.completed","id":"evt_ngx_hung"}'
    local res, err = b.http:post("/webhook", { body = body, headers = webhook.sign{ secret = secret, body = body } })
    redis:resume()
    assert.equal(0, out.ok)
    assert.matches("store_unavailable", out.errors[1])
    assert.is_true(hung < 1.5, ("%.2f s for a hung store (connect timeout 0.5 s)"):format(hung))
    assert.is_nil(res)
    assert.equal(503, err.status)
    assert.equal(0, #emu:requests())
    print(("\n    hung Redis inside nginx: error after %.2f s (connect_timeout 0.5)"):format(hung))
  end)
end)
