-- bearer embedded in a real nginx (LuaJIT build, lua-nginx-module): calls
-- from every yielding phase and timers, without blocking the worker; the
-- shared limiter across workers; the webhook receiver; reload.
local core = require "bearer.core"
local emulator = require "support.emulator"
local cjson = require "cjson"

local KEY = emulator.OVERTEN_KEY
-- the emulator's seeded org signs per-request webhooks with this secret
local WEBHOOK_SECRET = "whsec_emu_5f3c9a7e1b2d4f6a8c0e2b4d6f8a0c1e"

-- engine: "loop" (the default) or "thread"; connections: worker_connections
local function start_nginx(emu, workers, engine, connections)
  return emulator.start({ BEARER_EMULATOR_URL = emu.url, BEARER_TEST_WEBHOOK_SECRET = WEBHOOK_SECRET,
                          BEARER_EMULATOR_WORKERS = workers, BEARER_TEST_ENGINE = engine or "loop",
                          BEARER_TEST_CONNECTIONS = connections or 1024 },
                        emulator.ROOT .. "/spec/nginx/embed.conf.in", 20)
end

-- Runs a GET in a child process, in the background; its body lands in the
-- returned file when it completes.
local function background_get(url)
  local out = os.tmpname()
  os.remove(out)
  local script = out .. ".lua"
  local f = assert(io.open(script, "w"))
  f:write(([[
    package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
    package.cpath = %q .. "/build/5.4/?.so;" .. package.cpath
    local res = require("bearer").client{ base_url = %q, max_retries = 0, timeout = 30 }:get("")
    local f = io.open(%q, "w")
    f:write(res and res.body or "failed")
    f:close()
    os.rename(%q, %q)
    os.remove(%q)
  ]]):format(emulator.ROOT, emulator.ROOT, emulator.ROOT, url, out .. ".tmp",
             out .. ".tmp", out, script))
  f:close()
  os.execute("lua5.4 " .. script .. " >/dev/null 2>&1 &")
  return out
end

local read = require("support.files").read

local function wait_for(pred, what)
  for _ = 1, 500 do
    local v = pred()
    if v then return v end
    core.sleep(0.02)
  end
  error("timed out waiting for " .. what)
end

local function get_json(server, path) return server:get_json(path) end

-- No line of server's error log holds needle ("signal": a worker died).
local function log_free_of(server, needle)
  for _, line in ipairs(server:error_lines()) do
    assert.is_nil(line:find(needle, 1, true), line)
  end
end

describe("bearer inside nginx #integration", function()
  local emu, one

  setup(function()
    emu = emulator.start()
    one = start_nginx(emu, 1)
  end)
  teardown(function()
    if one then one:stop() end
    emu:stop()
  end)
  before_each(function() emu:reset() end)

  it("calls from content, access and rewrite handlers and from timers", function()
    for _, path in ipairs{ "/app/call", "/access", "/rewrite", "/app/timer" } do
      local out = get_json(one, path)
      assert.equal(200, out.status, path .. ": " .. cjson.encode(out))
      assert.equal("Bearer " .. KEY, out.json.headers.authorization)
    end
    assert.equal(4, #emu:requests())
  end)

  it("refuses to block where nginx cannot yield (init_by_lua)", function()
    local out = get_json(one, "/app/init")
    assert.is_false(out.ok)
    assert.equal("config", out.kind)
    assert.equal("blocking_context", out.code)
    assert.equal("blocking_context", out.limited_code)
    assert.is_true(out.limited_seconds < 1, "the rate limit made init_by_lua wait")
  end)

  it("gives a worker its own curl handle for a client made before the fork", function()
    local init = get_json(one, "/app/init")
    assert.equal(200, init.master_call)
    -- the master's call happened at start-up, before this spec's reset
    local out = get_json(one, "/fork")
    assert.equal(200, out.status, cjson.encode(out))
    local seen = emu:requests("/echo/fork-worker")
    assert.equal(1, #seen)
    -- the emulator numbers connections: the worker's is not the master's
    -- (the worker's engine may reuse a connection of its own)
    assert.is_number(init.master_connection)
    assert.are_not.equal(init.master_connection, seen[1].connection,
                         "the worker reused the master's connection")
  end)

  it("does not block the worker while a call waits", function()
    emu:fault{ path = "/echo/slowpath", type = "slow", delay = 2 }
    local done = background_get(one.url .. "/app/call?tag=slowpath")
    wait_for(function() return #emu:requests("/echo/slowpath") == 1 end, "the slow request")
    local t0 = core.monotime()
    local fast = get_json(one, "/app/fast")
    local elapsed = core.monotime() - t0
    assert.is_true(fast.fast)
    -- answered while the slow call is still pending in the same worker
    assert.is_nil(read(done), "the fast request waited for the slow one")
    print(("\n    /app/fast answered in %.1f ms while /app/call waited 2 s"):format(elapsed * 1000))
    local slow = cjson.decode(wait_for(function() return read(done) end, "the slow call"))
    assert.equal(200, slow.status)
    os.remove(done)
  end)

  it("keeps connections to the API alive in the pool threads", function()
    for i = 1, 12 do get_json(one, "/app/call?tag=k" .. i) end
    local seen = {}
    local n = 0
    for _, r in ipairs(emu:requests()) do
      if not seen[r.connection] then seen[r.connection] = true; n = n + 1 end
    end
    assert.is_true(n <= 4, n .. " connections for 12 calls (4 pool threads)")
  end)

  it("overlaps the calls of bearer.gather inside a handler", function()
    emu:fault{ path = "/echo/gather*", type = "slow", delay = 0.4, times = -1 }
    local got = get_json(one, "/app/gather")
    emu:clear_faults()
    assert.same({ 200, 200, 200, 200, 200 }, got.values)
    assert.is_true(got.seconds < 1.2, ("5 calls of 0.4 s took %.2f s"):format(got.seconds))
  end)

  it("survives malformed responses on reused connections (libcurl 7.88 double free)", function()
    local pid = get_json(one, "/app/fast").pid
    for i = 1, 8 do get_json(one, "/app/call?tag=warm" .. i) end
    emu:fault{ path = "/echo/bad", type = "raw", times = -1,
               bytes = "HTTP/1.1 200 OK\n\tAccess-Control-Allow-Origin: *\n\tConnection: Keep-Alive\n"
                 .. "Date: Wed, 10 May 2023 14:58:08 GMT\n\n<html></html>" }
    for _ = 1, 8 do
      local got = get_json(one, "/app/call?tag=bad")
      assert.equal("server", got.error and got.error.kind)
      assert.equal("malformed_response", got.error.code)
    end
    emu:clear_faults()
    assert.equal(200, get_json(one, "/app/call?tag=after").status)
    assert.equal(pid, get_json(one, "/app/fast").pid)
    log_free_of(one, "signal")
  end)

  describe("webhook receiver", function()
    local function post(body, headers)
      return one.http:post("/webhook", { body = body, headers = headers })
    end
    local function signed(body, ts)
      ts = tostring(ts or math.floor(core.now()))
      return { ["X-Overten-Signature"] = require("bearer.overten.webhook").signature(WEBHOOK_SECRET, ts, body),
               ["X-Overten-Timestamp"] = ts, ["Content-Type"] = "application/json" }
    end

    it("accepts a signed event and hands it to the handler after answering", function()
      local body = '{"event":"run.completed","run_id":"run_embed_1","task_id":"task_1"}'
      local res = assert(post(body, signed(body)))
      assert.equal(200, res.status)
      local events = wait_for(function()
        local got = get_json(one, "/app/webhook-events").events
        return #got > 0 and got
      end, "the handler")
      assert.equal("run_embed_1", events[#events].run_id)
    end)

    it("accepts an event the emulator signs and delivers", function()
      local ot = require("bearer.overten").client{ api_key = KEY, base_url = emu:overten_url() }
      local t = assert(ot:generate("excel", { prompt = "Q3", async = true,
                                              webhook_url = one.url .. "/webhook" }))
      emu:control("POST", "/overten/tasks/" .. t.task_id, { status = "completed" })
      local events = wait_for(function()
        for _, e in ipairs(get_json(one, "/app/webhook-events").events) do
          if e.task_id == t.task_id then return e end
        end
      end, "the emulator's delivery")
      assert.equal("run.completed", events.event)
      assert.equal(t.run_id, events.run_id)
    end)

    -- Two X-Overten-Signature lines (a secret being rotated), only the
    -- second valid: nginx hands the receiver a list, which the one verifier
    -- (overten.webhook.verify) joins. Sent by curl: a client header table
    -- cannot hold one name twice.
    it("accepts two signature header lines when one of them is valid", function()
      local body = '{"event":"run.completed","run_id":"run_embed_two"}'
      local h = signed(body)
      local function deliver(first, second)
        local cmd = ("curl -s -o /dev/null -w '%%{http_code}' -X POST --data-binary %q "
                     .. "-H 'Content-Type: application/json' -H 'X-Overten-Timestamp: %s' "
                     .. "-H 'X-Overten-Signature: %s' -H 'X-Overten-Signature: %s' %s/webhook")
                    :format(body, h["X-Overten-Timestamp"], first, second, one.url)
        local p = io.popen(cmd)
        local code = p:read("a")
        p:close()
        return code
      end
      local wrong = "sha256=" .. string.rep("0", 64)
      assert.equal("200", deliver(wrong, h["X-Overten-Signature"]))
      assert.equal("401", deliver(wrong, wrong))
      wait_for(function()
        for _, e in ipairs(get_json(one, "/app/webhook-events").events) do
          if e.run_id == "run_embed_two" then return e end
        end
      end, "the handler of the two-line delivery")
    end)

    it("rejects tampered, stale and malformed deliveries", function()
      local body = '{"event":"run.completed","run_id":"run_embed_2"}'
      local _, err = post(body .. " ", signed(body))
      assert.equal(401, err.status)
      assert.equal("bad_signature", err.code)
      _, err = post(body, signed(body, math.floor(core.now()) - 3600))
      assert.equal(401, err.status)
      assert.equal("stale_timestamp", err.code)
      _, err = post(body, { ["Content-Type"] = "application/json" })
      assert.equal(400, err.status)
      assert.equal("malformed", err.code)
    end)
  end)

  it("works after nginx -s reload, with new workers", function()
    local before = get_json(one, "/app/fast").pid
    assert.is_true(os.execute(("nginx -p %s/ -c %s/nginx.conf -s reload 2>/dev/null")
                              :format(one.prefix, one.prefix)))
    wait_for(function()
      local ok, out = pcall(get_json, one, "/app/fast")
      return ok and out.pid ~= before
    end, "new workers")
    assert.equal(200, get_json(one, "/app/call").status)
    assert.equal(200, get_json(one, "/app/timer").status)
  end)

  it("keeps secrets out of nginx's logs", function()
    get_json(one, "/app/call")
    for _, log in ipairs{ "/logs/error.log", "/logs/access.log" } do
      local text = read(one.prefix .. log) or ""
      assert.is_nil(text:find(KEY, 1, true), log)
      assert.is_nil(text:find(WEBHOOK_SECRET, 1, true), log)
    end
    assert.same({}, one:error_lines())
  end)

  it("runs transfers on the worker's own event loop: no engine thread", function()
    assert.equal(200, get_json(one, "/app/call?tag=loop").status)
    local out = get_json(one, "/app/engine")
    assert.matches("bearer.Engine(nginx,", out.engine, 1, true)
    assert.is_false(out.why_thread)
    assert.equal(5, out.threads)   -- the worker's own and thread_pool's 4: no engine thread
    -- a pool thread's Lua VM is in the worker too, but the loop is not its
    assert.same({ ran = true, on_loop = false, why = "not on the nginx worker's own thread" },
                get_json(one, "/app/engine_in_pool"))
    -- one engine, one driver: no thread on top of the loop
    local thread = get_json(one, "/app/engine_thread")
    assert.is_false(thread.ok)
    assert.matches("runs on nginx's event loop", thread.err, 1, true)
  end)

  -- libcurl 7.88 closes a socket still connecting (a connect timeout, a
  -- call given up) before it says CURL_POLL_REMOVE for it: epoll has
  -- forgotten the fd by then, and asking it to forget the fd again fails
  -- (nginx's alert) or, were the number reused, would drop another file
  it("fails calls whose connect times out, with no epoll error", function()
    local hole = require("support.redis").start{ backlog = 0 }
    local ok, why = pcall(function()
      hole:black_hole()
      for _ = 1, 3 do
        assert.same({ code = "connect_timeout" }, get_json(one, "/app/connect?port=" .. hole.port))
      end
    end)
    hole:stop()
    assert(ok, why)
    assert.equal(200, get_json(one, "/app/call?tag=after-hole").status)
    log_free_of(one, "epoll_ctl")
  end)

  describe("with few worker_connections", function()
    local small
    setup(function() small = start_nginx(emu, 1, "loop", 48) end)
    teardown(function() if small then small:stop() end end)

    it("fails the calls whose sockets nginx has no connection for, and keeps going", function()
      emu:fault{ path = "/echo/many*", type = "slow", delay = 0.3, times = -1 }
      local pid = get_json(small, "/app/fast").pid
      local codes = get_json(small, "/app/many?n=80")
      emu:clear_faults()
      assert.is_true((codes.ok or 0) > 0, cjson.encode(codes))
      assert.is_true((codes.worker_connections or 0) > 0, cjson.encode(codes))
      assert.equal(80, (codes.ok or 0) + codes.worker_connections, cjson.encode(codes))
      assert.equal(pid, get_json(small, "/app/fast").pid)
      log_free_of(small, "signal")
      -- the connections came back: a second round finds them again
      assert.same({ ok = 20 }, get_json(small, "/app/many?n=20"))
    end)
  end)

  -- The engine against the worker, on the loop and on a thread: transfers
  -- that finish before anyone waits, waiters that are gone, transfers
  -- still in flight when the Lua state closes (a reload's old worker).
  for _, way in ipairs{ "loop", "thread" } do
  describe("engine lifetimes (" .. way .. ")", function()
    local three
    setup(function() three = start_nginx(emu, 1, way) end)
    teardown(function() if three then three:stop() end end)

    it("runs the engine the way configured", function()
      assert.equal(200, get_json(three, "/app/call?tag=" .. way).status)
      local out = get_json(three, "/app/engine")
      assert.matches(way == "loop" and "(nginx," or "(threaded,", out.engine, 1, true)
      -- the worker's own, thread_pool's 4 and, on a thread, the engine's
      assert.equal(way == "loop" and 5 or 6, out.threads)
    end)

    it("reports an 8 MB download's progress to on_progress", function()
      emu:fault{ path = "/echo/big", type = "huge", bytes = 8 * 1024 * 1024 }
      local out = get_json(three, "/app/progress")
      emu:clear_faults()
      assert.equal(8 * 1024 * 1024, out.bytes)
      assert.is_true(out.calls >= 1)
      assert.same({ 8 * 1024 * 1024, 8 * 1024 * 1024 }, out.last)
      assert.is_true(out.growing)
    end)

    local function no_signal() log_free_of(three, "signal") end
    -- nginx's own alerts: at a worker's exit, one per socket the engine
    -- still held in an nginx connection ("open socket left in connection")
    local function no_alert() log_free_of(three, "[alert]") end

    local function alive(pid)
      return os.execute(("kill -0 %d 2>/dev/null"):format(pid))
    end

    -- issue 9 follow-up: the fork spec's blocking call crashed a worker
    -- now and then (signal 11) when its transfer was done before the
    -- worker's thread started waiting
    it("finishes blocking calls whose transfers end before the worker waits", function()
      assert.equal(200, get_json(three, "/app/call?tag=first").status)   -- the engine runs
      local pid = get_json(three, "/app/fast").pid
      local out = get_json(three, "/blocking?n=400")
      assert.same({ connect_failed = 400 }, out)
      assert.equal(pid, get_json(three, "/app/fast").pid)
      no_signal()
    end)

    it("finishes calls their handlers abandoned (an error, ngx.exit) and collects them", function()
      emu:fault{ path = "/echo/abandoned*", type = "slow", delay = 0.3, times = -1 }
      local pid = get_json(three, "/app/fast").pid
      local _, err = three.http:get("/app/abandon?how=error")
      assert.equal(500, err and err.status)
      local res = assert(three.http:get("/app/abandon?how=exit"))
      assert.equal(204, res.status)
      wait_for(function() return get_json(three, "/app/gc").running == 0 end,
               "the engine to finish the abandoned calls")
      emu:clear_faults()
      assert.equal(200, get_json(three, "/app/call?tag=after").status)
      assert.equal(pid, get_json(three, "/app/gc").pid)
      no_signal()
    end)

    it("closes an old worker's engine with calls in flight on reload", function()
      emu:fault{ path = "/echo/abandoned*", type = "slow", delay = 2, times = -1 }
      for round = 1, 3 do
        local old = get_json(three, "/app/call?tag=round" .. round)
        assert.equal(200, old.status)
        local pid = get_json(three, "/app/fast").pid
        three.http:get("/app/abandon?how=exit")
        assert.is_true(get_json(three, "/app/gc?collect=no").running > 0)
        -- the old worker has no request left: it exits (lua_close) while
        -- its engine still runs the ten transfers
        assert.is_true(os.execute(("nginx -p %s/ -c %s/nginx.conf -s reload 2>/dev/null")
                                  :format(three.prefix, three.prefix)))
        wait_for(function() return not alive(pid) end, "the old worker to exit")
        wait_for(function()
          local ok, out = pcall(get_json, three, "/app/fast")
          return ok and out.pid ~= pid
        end, "a new worker")
      end
      emu:clear_faults()
      assert.equal(200, get_json(three, "/app/call?tag=after-reload").status)
      no_signal()
      no_alert()
    end)
  end)
  end

  describe("with two workers", function()
    local two
    setup(function() two = start_nginx(emu, 2) end)
    teardown(function() if two then two:stop() end end)

    it("lets the Optiverse watchers of all workers share one polling slot", function()
      emu:reset()
      local outs = { background_get(two.url .. "/app/watch?w=1"), background_get(two.url .. "/app/watch?w=2"),
                     background_get(two.url .. "/app/watch?w=3") }
      for _, out in ipairs(outs) do
        local r = cjson.decode(wait_for(function() return read(out) end, "a watcher"))
        assert.truthy(r.records, cjson.encode(r))
        os.remove(out)
      end
      local times = {}
      for _, r in ipairs(emu:requests("/external-api/v1/list-records")) do times[#times + 1] = r.time end
      table.sort(times)
      assert.is_true(#times >= 6, #times .. " polls")
      for i = 2, #times do
        assert.is_true(times[i] - times[i - 1] >= 1, ("polls %d and %d %.3f s apart")
                       :format(i - 1, i, times[i] - times[i - 1]))
      end
    end)

    it("shares one rate limit between the workers", function()
      local outs = {}
      for i = 1, 8 do outs[i] = background_get(two.url .. "/app/limited?i=" .. i) end
      local pids = {}
      for _, out in ipairs(outs) do
        local r = cjson.decode(wait_for(function() return read(out) end, "a limited call"))
        assert.equal(200, r.status)
        pids[r.pid] = true
        os.remove(out)
      end
      local times = {}
      for _, r in ipairs(emu:requests("/echo/limited")) do times[#times + 1] = r.time end
      table.sort(times)
      assert.equal(8, #times)
      -- 2 per second, as the API sees them: any 3 consecutive arrivals
      -- span at least a second
      for i = 3, #times do
        assert.is_true(times[i] - times[i - 2] >= 1,
                       ("starts %d and %d only %.3f s apart"):format(i - 2, i, times[i] - times[i - 2]))
      end
      local n = 0
      for _ in pairs(pids) do n = n + 1 end
      print(("\n    8 limited calls over %.2f s from %d worker(s)"):format(times[#times] - times[1], n))
    end)
  end)
end)
