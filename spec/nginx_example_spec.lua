-- examples/nginx run as users run it (examples/nginx/run, behind `make
-- nginx-example`: two workers, the README's two lines), against the
-- emulator it starts: the JSON API, 200 concurrent requests, keep-alive to
-- the upstream, the webhook receiver, and stopping both by pid.
local bearer = require "bearer"
local core = require "bearer.core"
local emulator = require "support.emulator"
local cjson = require "cjson"

local WEBHOOK_SECRET = "whsec_exampleSecret0123456789abcdefABCDEF"
local RUN = emulator.ROOT .. "/examples/nginx/run"

-- The NAME=value lines `examples/nginx/run start` prints.
local function started(out)
  local f = {}
  for k, v in out:gmatch("\n?([%u_]+)=(%S+)") do f[k] = v end
  assert(f.NGINX_EXAMPLE_URL and f.NGINX_EXAMPLE_PREFIX and f.BEARER_EMULATOR_URL
         and f.BEARER_EMULATOR_PREFIX, "the example did not start:\n" .. out)
  return f
end

local function gone(prefix)
  local f = io.open(prefix .. "/nginx.conf")
  if f then f:close() end
  return f == nil
end

describe("examples/nginx #integration", function()
  local emu, server, run, printed

  setup(function()
    local p = assert(io.popen("OVERTEN_WEBHOOK_SECRET=" .. WEBHOOK_SECRET .. " " .. RUN .. " start 2>&1"))
    printed = p:read("a")
    p:close()
    run = started(printed)
    emu = emulator.attach(run.BEARER_EMULATOR_URL, run.BEARER_EMULATOR_PREFIX)
    server = emulator.attach(run.NGINX_EXAMPLE_URL, run.NGINX_EXAMPLE_PREFIX)
    server.http:close()
    server.http = bearer.client{ base_url = server.url, max_retries = 0, timeout = 20 }
  end)
  teardown(function()
    -- the last spec stops both; this is for when it did not run
    if server then server:stop() end
    if emu then emu:stop() end
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
    -- each worker's engine opens a connection per call in flight and keeps
    -- it alive: the 200 overlap, so fewer connections than calls, and the
    -- calls after the burst reuse them instead of connecting again
    assert.is_true(connections < 200, connections .. " upstream connections")
    for i = 1, 20 do assert.equal(200, (get_json("/records?limit=2&offset=" .. i))) end
    local fresh = 0
    for _, r in ipairs(emu:requests("/external-api/v1/list-records")) do
      if not seen[r.connection] then seen[r.connection] = true; fresh = fresh + 1 end
    end
    assert.is_true(fresh <= 2, fresh .. " new connections for 20 calls after the burst")
    print(("\n    200 concurrent /records in %.2f s over %d upstream connections")
          :format(elapsed, connections))
  end)

  it("answers 500 concurrent calls to a 0.5 s upstream in well under 3 s, /health staying fast", function()
    emu:fault{ path = "/external-api/v1/list-records", type = "slow", delay = 0.5, times = -1 }
    local urls = {}
    for i = 1, 500 do
      urls[i] = ("-o /dev/null '%s/records?limit=2&offset=%d'"):format(server.url, i % 50)
    end
    local t0 = core.monotime()
    local out = os.tmpname()
    os.execute("curl -s -Z --parallel-max 500 --max-time 30 -w '%{http_code}\\n' "
               .. table.concat(urls, " ") .. " > " .. out .. " 2>/dev/null &")
    -- while the 500 wait on the upstream, another location answers at once
    core.sleep(0.2)
    local h0 = core.monotime()
    local health = assert(server.http:get("/health"))
    local health_time = core.monotime() - h0
    assert.equal(200, health.status)
    local codes
    for _ = 1, 600 do
      local n
      codes, n = {}, 0
      local f = io.open(out)
      for line in f:lines() do codes[line] = (codes[line] or 0) + 1; n = n + 1 end
      f:close()
      if n >= 500 then break end
      core.sleep(0.02)
    end
    local elapsed = core.monotime() - t0
    os.remove(out)
    emu:clear_faults()
    assert.same({ ["200"] = 500 }, codes)
    assert.is_true(elapsed < 3, ("500 calls took %.2f s"):format(elapsed))
    assert.is_true(health_time < 0.25, ("/health took %.3f s under load"):format(health_time))
    print(("\n    500 concurrent /records (0.5 s upstream) in %.2f s; /health in %.1f ms meanwhile")
          :format(elapsed, health_time * 1000))
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

  it("printed its URLs and settings, and no secret", function()
    assert.truthy(printed:find("# examples/nginx: " .. server.url .. "\n", 1, true), printed)
    assert.truthy(printed:find("#   curl -s '" .. server.url .. "/records?limit=5'", 1, true), printed)
    assert.truthy(printed:find("#   OVERTEN_BASE_URL=" .. emu.url .. "/api/v1\n", 1, true), printed)
    assert.truthy(printed:find("#   OVERTEN_WEBHOOK_SECRET: yours\n", 1, true), printed)
    for _, secret in ipairs{ emulator.OVERTEN_KEY, emulator.OPTIVERSE_KEY, WEBHOOK_SECRET } do
      assert.is_nil(printed:find(secret, 1, true), printed)
    end
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

  it("stops the example and its emulator by pid, removing their prefixes", function()
    local p = assert(io.popen(RUN .. " stop " .. run.NGINX_EXAMPLE_PREFIX .. " 2>&1"))
    local out = p:read("a")
    assert.is_true(p:close(), out)
    assert.is_true(gone(run.NGINX_EXAMPLE_PREFIX))
    assert.is_true(gone(run.BEARER_EMULATOR_PREFIX))
    local c = bearer.client{ base_url = run.NGINX_EXAMPLE_URL, max_retries = 0 }
    local _, err = c:get("/health")
    assert.equal("connection", err.kind)
    server.prefix, emu.prefix = nil, nil
  end)
end)

describe("make nginx-example #integration", function()
  it("runs in the foreground, answers, and stops the example and the emulator on TERM", function()
    local log = os.tmpname()
    -- make's pid: it passes TERM on to the run script and waits for it
    local p = assert(io.popen(("(cd %s && exec make -s nginx-example >%s 2>&1) & echo $!")
                              :format(emulator.ROOT, log)))
    local pid = assert(tonumber(p:read("a"):match("%d+")))
    p:close()
    local function output()
      local f = assert(io.open(log))
      local text = f:read("a")
      f:close()
      return text
    end
    local deadline = core.monotime() + 120
    while not output():find("# Ctrl-C stops", 1, true) and core.monotime() < deadline do core.sleep(0.2) end
    local text = output()
    local ok, run = pcall(started, text)
    if not ok then os.execute("kill -TERM " .. pid) end
    assert(ok, run)
    local c = bearer.client{ base_url = run.NGINX_EXAMPLE_URL, max_retries = 0, timeout = 20 }
    assert.equal(250, cjson.decode(assert(c:get("/records?limit=1")).body).total)
    c:close()

    assert(os.execute("kill -TERM " .. pid))
    deadline = core.monotime() + 30
    while os.execute("kill -0 " .. pid .. " 2>/dev/null") and core.monotime() < deadline do core.sleep(0.1) end
    text = output()
    os.remove(log)
    assert.truthy(text:find("# stopped\n", 1, true), text)
    assert.is_true(gone(run.NGINX_EXAMPLE_PREFIX))
    assert.is_true(gone(run.BEARER_EMULATOR_PREFIX))
    local _, err = bearer.client{ base_url = run.NGINX_EXAMPLE_URL, max_retries = 0 }:get("/health")
    assert.equal("connection", err.kind)
  end)
end)
