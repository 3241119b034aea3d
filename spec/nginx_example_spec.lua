-- examples/nginx run as users run it (two workers, the README's two
-- lines), against the emulator: the JSON API, 200 concurrent requests,
-- keep-alive to the upstream, and the webhook receiver.
local bearer = require "bearer"
local core = require "bearer.core"
local emulator = require "support.emulator"
local cjson = require "cjson"

local WEBHOOK_SECRET = "whsec_exampleSecret0123456789abcdefABCDEF"

-- The example's nginx.conf, made a launcher template: its port, pid file
-- and checkout paths become the launcher's placeholders.
local function template()
  local f = assert(io.open(emulator.ROOT .. "/examples/nginx/nginx.conf"))
  local conf = f:read("a")
  f:close()
  conf = conf:gsub("127%.0%.0%.1:8080", "127.0.0.1:@PORT@")
             :gsub("pid logs/nginx%.pid;", 'pid "@PREFIX@/nginx.pid";')
             :gsub("%$prefix/lua/", "@ROOT@/examples/nginx/lua/")
             :gsub("%$prefix/%.%./%.%./", "@ROOT@/")
             :gsub("location = /health", "location = /_emulator/health")
  local path = os.tmpname()
  f = assert(io.open(path, "w"))
  -- workers read bearer from the checkout (see spec/nginx/embed.conf.in)
  f:write("# bearer-emulator: examples/nginx/nginx.conf for spec/nginx_example_spec.lua\n",
          "user root;\n", conf)
  f:close()
  return path
end

describe("examples/nginx #integration", function()
  local emu, server, conf

  setup(function()
    emu = emulator.start()
    conf = template()
    local env = {
      OPTIVERSE_API_KEY = emulator.OPTIVERSE_KEY, OPTIVERSE_BASE_URL = emu:optiverse_url(),
      OVERTEN_API_KEY = emulator.OVERTEN_KEY, OVERTEN_BASE_URL = emu:overten_url(),
      OVERTEN_WEBHOOK_SECRET = WEBHOOK_SECRET,
    }
    local vars = {}
    for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. v end
    local p = assert(io.popen(table.concat(vars, " ") .. " " .. emulator.SCRIPT .. " start " .. conf .. " 2>&1"))
    local out = p:read("a")
    p:close()
    local url = out:match("BEARER_EMULATOR_URL=(%S+)")
    local prefix = out:match("BEARER_EMULATOR_PREFIX=(%S+)")
    assert(url and prefix, "the example did not start:\n" .. out)
    server = setmetatable({ url = url, prefix = prefix }, emulator)
    server.http = bearer.client{ base_url = url, max_retries = 0, timeout = 20 }
  end)
  teardown(function()
    if server then server:stop() end
    emu:stop()
    os.remove(conf)
  end)
  before_each(function() emu:reset() end)

  local function get_json(path)
    local res = assert(server.http:get(path))
    return res.status, cjson.decode(res.body)
  end

  it("lists Optiverse records", function()
    local status, out = get_json("/records?limit=5")
    assert.equal(200, status)
    assert.equal(5, #out.records)
    assert.equal(250, out.total)
    assert.truthy(out.records[1].title)
  end)

  it("verifies the Overten key without showing a secret", function()
    local status, out = get_json("/verify")
    assert.equal(200, status)
    assert.equal("org_test", out.org_id)
    assert.equal("sk_live_0123", out.key_prefix)
    assert.is_nil(out.webhook_secret)
  end)

  it("answers 200 concurrent requests, over a few kept-alive upstream connections", function()
    local urls = {}
    for i = 1, 200 do
      urls[i] = ("-o /dev/null '%s/records?limit=2&offset=%d'"):format(server.url, i % 50)
    end
    local t0 = core.monotime()
    local p = assert(io.popen("curl -s -Z --parallel-max 200 --max-time 60 "
                              .. "-w '%{http_code}\\n' " .. table.concat(urls, " ") .. " 2>/dev/null"))
    local codes = {}
    for line in p:lines() do codes[line] = (codes[line] or 0) + 1 end
    p:close()
    local elapsed = core.monotime() - t0
    assert.same({ ["200"] = 200 }, codes)
    local seen, connections = {}, 0
    local upstream = emu:requests("/external-api/v1/list-records")
    assert.equal(200, #upstream)
    for _, r in ipairs(upstream) do
      if not seen[r.connection] then seen[r.connection] = true; connections = connections + 1 end
    end
    -- two workers, 16 pool threads each, one kept-alive handle per thread
    assert.is_true(connections <= 32, connections .. " upstream connections")
    print(("\n    200 concurrent /records in %.2f s over %d upstream connections")
          :format(elapsed, connections))
  end)

  it("receives Overten webhooks", function()
    local body = '{"event":"run.completed","run_id":"run_ex_1"}'
    local ts = tostring(math.floor(core.now()))
    local headers = { ["X-Overten-Signature"] = require("bearer.overten.webhook").signature(WEBHOOK_SECRET, ts, body),
                      ["X-Overten-Timestamp"] = ts, ["Content-Type"] = "application/json" }
    assert.equal(200, assert(server.http:post("/webhooks/overten", { body = body, headers = headers })).status)
    local _, err = server.http:post("/webhooks/overten", { body = body .. "x", headers = headers })
    assert.equal(401, err.status)
  end)

  it("logs no error and no secret", function()
    assert.same({}, server:error_lines())
    for _, log in ipairs{ "/logs/error.log", "/logs/access.log" } do
      local f = io.open(server.prefix .. log)
      local text = f and f:read("a") or ""
      if f then f:close() end
      for _, secret in ipairs{ emulator.OVERTEN_KEY, emulator.OPTIVERSE_KEY, WEBHOOK_SECRET } do
        assert.is_nil(text:find(secret, 1, true), log)
      end
    end
  end)
end)
