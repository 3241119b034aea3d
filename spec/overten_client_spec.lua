-- bearer.overten: the API-key client, generation (sync, async, promotion,
-- idempotency), tasks and wait, runs and the cursor iterator, and the
-- error table of issue #3, against the emulator.
local bearer = require "bearer"
local overten = require "bearer.overten"
local emulator = require "support.emulator"
local subprocess = require "support.subprocess"

local KEY = emulator.OVERTEN_KEY

-- A fake clock that sleep advances: nothing waits for real.
local function fake_time(start)
  local t = { now = start or 1000, slept = {} }
  t.clock = function() return t.now end
  t.sleep = function(s) t.slept[#t.slept + 1] = s; t.now = t.now + s end
  return t
end

-- Records what the module hands to http:request, then does it.
local function record(c)
  local real, calls = c.http, {}
  c.http = setmetatable({
    request = function(_, method, path, opts)
      calls[#calls + 1] = { method = method, path = path, opts = opts }
      return real:request(method, path, opts)
    end,
  }, { __index = function(_, k) return function(_, ...) return real[k](real, ...) end end })
  return calls
end

local function sum(list)
  local s = 0
  for _, v in ipairs(list) do s = s + v end
  return s
end

describe("bearer.overten client #unit", function()
  it("raises a config error object without a key", function()
    if os.getenv("OVERTEN_API_KEY") then return end
    local ok, err = pcall(overten.client, { base_url = "http://127.0.0.1:1" })
    assert.is_false(ok)
    assert.is_true(bearer.error.is(err))
    assert.equal("config", err.kind)
    assert.equal("missing_key", err.code)   -- the same code as Optiverse's
  end)

  it("raises for caller mistakes", function()
    assert.has_error(function() overten.client{ api_key = KEY, auth = "basic" } end,
                     "bad option 'auth' to 'client' ('bearer' or 'x-api-key' expected, got basic)")
    assert.has_error(function() overten.client{ api_key = 42 } end)
    assert.has_error(function() overten.client{ api_key = KEY, key = KEY } end)
    assert.has_error(function() overten.client{ api_key = KEY, bogus = 1 } end,
                     "bad option 'bogus' to 'client' (unknown option)")
    local ok, err = pcall(overten.client, { api_key = "sk_live_short" })
    assert.is_false(ok)
    assert.equal("config", err.kind)
    local c = overten.client{ api_key = KEY, base_url = "http://127.0.0.1:1" }
    assert.has_error(function() c:generate("pdf", { prompt = "x" }) end)
    assert.has_error(function() c:generate("excel") end)
    assert.has_error(function() c:generate("excel", {}) end)
    assert.has_error(function() c:wait(42) end)
    assert.has_error(function() c:run(nil) end)
  end)

  it("uses the documented base URL by default and OVERTEN_* variables", function()
    if not os.getenv("OVERTEN_BASE_URL") then
      assert.equal("https://backend.overtenai.com/api/v1", overten.client{ api_key = KEY }.base_url)
    end
    local out, ok = subprocess.run([[
      local c = require("bearer.overten").client()
      print(c.base_url, c.http:key():prefix())
    ]], { OVERTEN_API_KEY = KEY, OVERTEN_BASE_URL = "http://127.0.0.1:9/api/v1" })
    assert.is_true(ok, out)
    assert.truthy(out:find("http://127.0.0.1:9/api/v1\tsk_live_0123", 1, true), out)
  end)

  it("refuses invalid values without sending anything", function()
    local c = overten.client{ api_key = KEY, base_url = "http://127.0.0.1:1", max_retries = 0 }
    local calls = record(c)
    local function check(res, err)
      assert.is_nil(res)
      assert.equal("validation", err.kind)
      assert.equal("invalid_argument", err.code)
    end
    check(c:generate("excel", { prompt = "" }))
    check(c:generate("word", { prompt = string.rep("x", 10001) }))
    check(c:generate("word", { prompt = "x", timeout_ms = 5 }))
    check(c:runs_page{ limit = 101 })
    check(c:runs_page{ limit = 0 })
    local ok, err = pcall(function() for _ in c:runs{ limit = 1.5 } do end end)
    assert.is_false(ok)
    assert.equal("validation", err.kind)
    assert.equal(0, #calls)
  end)
end)

describe("bearer.overten client #integration", function()
  local emu, t

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function()
    emu:reset()
    t = fake_time()
  end)

  local function client(opts)
    opts = opts or {}
    opts.api_key = opts.api_key or KEY
    opts.base_url = emu:overten_url()
    opts.clock, opts.sleep = t.clock, t.sleep
    return overten.client(opts)
  end

  local function raw_strings(tbl, found)
    found = found or {}
    for _, v in pairs(tbl) do
      if type(v) == "string" then found[#found + 1] = v
      elseif type(v) == "table" then raw_strings(v, found) end
    end
    return found
  end

  describe("verify", function()
    it("returns the org with webhook_secret as a key, over Bearer by default", function()
      local org = assert(client():verify())
      assert.equal("org_test", org.org_id)
      assert.equal("Test Org", org.org_name)
      assert.equal("pro", org.tier)
      assert.equal("sk_live_0123", org.key_prefix)
      assert.is_true(bearer.key.is(org.webhook_secret))
      assert.equal("webhook", org.webhook_secret:scheme())
      for _, s in ipairs(raw_strings(org)) do assert.is_nil(s:find("whsec_emu_5f3c9a7e", 1, true)) end
      assert.equal("Bearer " .. KEY, emu:requests("/api/v1/verify")[1].headers.authorization)
    end)

    it("sends X-API-Key with auth = 'x-api-key'", function()
      assert(client{ auth = "x-api-key" }:verify())
      local seen = emu:requests("/api/v1/verify")[1]
      assert.equal(KEY, seen.headers["x-api-key"])
      assert.is_nil(seen.headers.authorization)
    end)
  end)

  describe("generate", function()
    it("runs a sync generation with a generated idempotency key and a 320 s attempt timeout", function()
      local c = client()
      local calls = record(c)
      local r = assert(c:generate("excel", { prompt = "Q3 sales report" }))
      assert.equal("completed", r.status)
      assert.truthy(r.run_id:find("^run_"))
      assert.truthy(r.download_url)
      assert.is_nil(r.promoted)
      local o = calls[1].opts
      assert.equal("POST", calls[1].method)
      assert.equal("/excel/generate", calls[1].path)
      assert.equal(320, o.timeout)
      assert.truthy(o.json.idempotency_key:find("^%x+$"))
      assert.equal(32, #o.json.idempotency_key)
      assert.equal(o.json.idempotency_key, o.idempotency_key)
      assert.equal(o.json.idempotency_key, emu:requests("/api/v1/excel/generate")[1].headers["idempotency-key"])
      -- a new logical call gets a new key
      assert(c:generate("excel", { prompt = "again" }))
      assert.not_equal(o.json.idempotency_key, calls[2].opts.json.idempotency_key)
    end)

    it("keeps the caller's idempotency key, and the API replays or refuses on reuse", function()
      local c = client()
      local calls = record(c)
      local a = assert(c:generate("word", { prompt = "memo", idempotency_key = "mine-1" }))
      assert.equal("mine-1", calls[1].opts.json.idempotency_key)
      local b = assert(c:generate("word", { prompt = "memo", idempotency_key = "mine-1" }))
      assert.equal(a.run_id, b.run_id)
      local res, err = c:generate("word", { prompt = "other", idempotency_key = "mine-1" })
      assert.is_nil(res)
      assert.equal("conflict", err.kind)
      assert.equal("conflict", err.code)
    end)

    it("retries a POST whose answer was lost with the same key, so it runs once", function()
      emu:fault{ path = "/api/v1/slides/generate", type = "truncate" }
      local c = client()
      local r = assert(c:generate("slides", { prompt = "Retried deck" }))
      local seen = emu:requests("/api/v1/slides/generate")
      assert.equal(2, #seen)
      assert.equal(seen[1].headers["idempotency-key"], seen[2].headers["idempotency-key"])
      local n = 0
      for run in c:runs{ limit = 100 } do
        if run.title == "Retried deck" then n = n + 1; assert.equal(r.run_id, run.run_id) end
      end
      assert.equal(1, n)
    end)

    it("queues with async = true", function()
      local c = client()
      local calls = record(c)
      local task = assert(c:generate("word", { prompt = "memo", async = true }))
      assert.equal("queued", task.status)
      assert.truthy(task.task_id:find("^task_"))
      assert.truthy(task.run_id)
      assert.is_nil(task.promoted)
      assert.is_nil(calls[1].opts.timeout)
      assert.is_true(calls[1].opts.json.async)
    end)

    it("returns the queued task with promoted = true on a 202 promotion", function()
      emu:config{ sync_ceiling = 60 }
      local task = assert(client():generate("excel", { prompt = "big model" }))
      assert.equal(true, task.promoted)
      assert.equal("queued", task.status)
      assert.truthy(task.task_id)
      assert.truthy(task.run_id)
    end)

    it("waits itself with wait = true", function()
      emu:config{ sync_ceiling = 0 }
      local seen = {}
      local done = assert(client():generate("excel", { prompt = "big model", wait = true,
        on_progress = function(task) seen[#seen + 1] = task.status end }))
      assert.equal("completed", done.status)
      assert.truthy(done.download_url)
      assert.same({ "queued", "running", "running", "running", "completed" }, seen)
      assert.same({ 2, 3, 4.5, 6.75, 10 }, t.slept)
    end)

    it("turns a 408 that says to go async into an async resubmission with the same key", function()
      emu:fault{ path = "/api/v1/word/generate", type = "status", status = 408,
                 body = '{"success":false,"error":"timeout",'
                        .. '"message":"Sync ceiling exceeded; retry with async: true."}' }
      local task = assert(client{ max_retries = 0 }:generate("word", { prompt = "long memo" }))
      assert.equal(true, task.promoted)
      assert.equal("queued", task.status)
      assert.truthy(task.task_id)
      local seen = emu:requests("/api/v1/word/generate")
      assert.equal(2, #seen)
      assert.equal(seen[1].headers["idempotency-key"], seen[2].headers["idempotency-key"])
    end)

    it("never lets the core retry a sync call's 408 (each could wait 320 s again)", function()
      emu:fault{ path = "/api/v1/word/generate", type = "status", status = 408, times = -1,
                 body = '{"success":false,"error":"timeout","message":"Sync ceiling exceeded."}' }
      local _, err = client():generate("word", { prompt = "memo" })   -- default max_retries = 2
      assert.equal("timeout", err.kind)
      assert.equal(1, err.attempts)
      assert.equal(1, #emu:requests("/api/v1/word/generate"))
      -- 5xx are still retried, with the same key
      emu:reset()
      emu:fault{ path = "/api/v1/word/generate", type = "status", status = 503 }
      assert(client():generate("word", { prompt = "memo" }))
      local seen = emu:requests("/api/v1/word/generate")
      assert.equal(2, #seen)
      assert.equal(seen[1].headers["idempotency-key"], seen[2].headers["idempotency-key"])
    end)

    it("takes the task from a 408 body that names it, and returns other 408s", function()
      emu:fault{ path = "/api/v1/word/generate", type = "status", status = 408,
                 body = '{"message":"Sync ceiling exceeded; poll the task (async).",'
                        .. '"task_id":"task_emu_running","run_id":"run_x"}' }
      local c = client{ max_retries = 0 }
      local task = assert(c:generate("word", { prompt = "memo" }))
      assert.same({ promoted = true, status = "queued", task_id = "task_emu_running", run_id = "run_x",
                    message = "Sync ceiling exceeded; poll the task (async)." }, task)
      assert.equal(1, #emu:requests("/api/v1/word/generate"))
      emu:fault{ path = "/api/v1/word/generate", type = "status", status = 408 }
      local res, err = c:generate("word", { prompt = "memo" })
      assert.is_nil(res)
      assert.equal("timeout", err.kind)
    end)

    it("generates slides outlines the same way", function()
      local c = client()
      local calls = record(c)
      local r = assert(c:slides_outline{ prompt = "Roadmap" })
      assert.equal("completed", r.status)
      assert.equal(3, #r.outline)
      assert.equal(32, #calls[1].opts.json.idempotency_key)
    end)
  end)

  describe("tasks and wait", function()
    it("reads a task", function()
      local task = assert(client():task("task_emu_running"))
      assert.equal("running", task.status)
      assert.equal(42, task.progress)
    end)

    it("polls after 2 s, backs off by 1.5x and returns the completed task", function()
      local statuses = {}
      local task = assert(client():wait("task_emu_progress", {
        on_progress = function(tk) statuses[#statuses + 1] = ("%s:%d"):format(tk.status, tk.progress) end }))
      assert.equal("completed", task.status)
      assert.truthy(task.download_url)          -- result fields lifted
      assert.equal(task.result.download_url, task.download_url)
      assert.same({ "queued:0", "running:25", "running:60", "running:90", "completed:100" }, statuses)
      assert.same({ 2, 3, 4.5, 6.75, 10 }, t.slept)
      assert.equal(5, #emu:requests("/api/v1/tasks/task_emu_progress"))
    end)

    it("never waits more than 10 s between polls and stops at the timeout", function()
      local task, err = client():wait("task_emu_running", { timeout = 60 })
      assert.is_nil(task)
      assert.equal("timeout", err.kind)
      assert.equal("wait_timeout", err.code)
      assert.equal("running", err.task.status)
      assert.equal(2, t.slept[1])
      for _, s in ipairs(t.slept) do assert.is_true(s <= 10) end
      assert.equal(10, t.slept[5])
      assert.equal(60, sum(t.slept))
    end)

    for _, status in ipairs{ "failed", "cancelled", "expired" } do
      it("returns a task error for a task that ends " .. status, function()
        local task, err = client():wait("task_emu_" .. status)
        assert.is_nil(task)
        assert.equal("task", err.kind)
        assert.equal(status, err.code)
        assert.equal(status, err.task.status)
        assert.equal("task_emu_" .. status, err.task.task_id)
      end)
    end

    it("rides out transient failures but returns others", function()
      emu:fault{ path = "/api/v1/tasks/task_emu_progress", type = "status", status = 503, times = 2 }
      local task = assert(client{ max_retries = 0 }:wait("task_emu_progress"))
      assert.equal("completed", task.status)
      local res, err = client():wait("task_nope")
      assert.is_nil(res)
      assert.equal("not_found", err.kind)
      assert.equal(1, #emu:requests("/api/v1/tasks/task_nope"))
    end)

    it("waits on a generated task until it completes, or fails", function()
      local c = client()
      local q = assert(c:generate("word", { prompt = "memo", async = true }))
      local done = assert(c:wait(q.task_id))
      assert.equal("completed", done.status)
      assert.equal(q.run_id, done.run_id)
      assert.equal("completed", assert(c:run(q.run_id)).status)
      q = assert(c:generate("word", { prompt = "memo #fail", async = true }))
      local res, err = c:wait(q.task_id)
      assert.is_nil(res)
      assert.equal("task", err.kind)
      assert.equal("failed", err.code)
      assert.equal("upstream_error", err.task.error.code)
    end)
  end)

  describe("runs", function()
    it("reads one run with its download URL", function()
      local run = assert(client():run("run_01M7VYMXVZMEN04XFYBRPG8T29"))
      assert.equal("Quarterly board memo", run.title)
      assert.truthy(run.download_url)
    end)

    it("iterates lazily over every page, keeping the filters", function()
      local c = client()
      local it = c:runs{ limit = 50, status = "completed" }
      assert.equal(0, #emu:requests("/api/v1/runs"))
      local n, last = 0, nil
      for run in it do
        n = n + 1
        assert.equal("completed", run.status)
        if n == 1 then assert.equal(1, #emu:requests("/api/v1/runs")) end
        last = run
      end
      local seen = emu:requests("/api/v1/runs")
      assert.equal(3, #seen)
      assert.equal(101, n)
      for i, r in ipairs(seen) do
        assert.truthy(r.query:find("status=completed", 1, true))
        assert.truthy(r.query:find("limit=50", 1, true))
        assert.equal(i > 1, r.query:find("cursor=", 1, true) ~= nil)
      end
      assert.equal("run_01KY15J25CJK533905SQQEE4R4", last.run_id)
    end)

    it("gives whole pages with :pages() and one page with runs_page", function()
      local c = client()
      local sizes = {}
      for page in c:runs{ limit = 50 }:pages() do sizes[#sizes + 1] = #page.data end
      assert.same({ 50, 50, 20 }, sizes)
      local p1 = assert(c:runs_page{ limit = 2 })
      assert.equal(2, #p1.data)
      local p2 = assert(c:runs_page{ limit = 2, cursor = p1.next_cursor })
      assert.not_equal(p1.data[1].run_id, p2.data[1].run_id)
    end)

    it("raises a failed page's error object", function()
      local c = client{ max_retries = 0 }
      local it = c:runs{ limit = 50 }
      for _ = 1, 50 do assert(it()) end
      emu:fault{ path = "/api/v1/runs", type = "status", status = 500, times = -1 }
      local ok, err = pcall(it)
      assert.is_false(ok)
      assert.is_true(bearer.error.is(err))
      assert.equal("server", err.kind)
      assert.equal(500, err.status)
    end)

    it("stops with an error on a repeated cursor", function()
      emu:fault{ path = "/api/v1/runs", type = "status", status = 200, times = -1,
                 body = '{"data":[{"run_id":"run_a"}],"next_cursor":"c1"}' }
      local n = 0
      local ok, err = pcall(function() for _ in client():runs() do n = n + 1 end end)
      assert.is_false(ok)
      assert.equal("server", err.kind)
      assert.equal("repeated_cursor", err.code)
      assert.equal(1, n)   -- the page that repeats a cursor is not trusted
      assert.equal(2, #emu:requests("/api/v1/runs"))
    end)
  end)

  describe("errors", function()
    it("invalid_api_key: 401 auth", function()
      local res, err = client{ api_key = "sk_live_0000000000000000000000000000" }:verify()
      assert.is_nil(res)
      assert.equal("auth", err.kind)
      assert.equal("invalid_api_key", err.code)
      assert.equal(401, err.status)
    end)

    it("forbidden: 403 for a suspended org, while verify still works", function()
      emu:control("POST", "/overten/orgs/org_test", { status = "suspended" })
      local c = client()
      assert.equal("suspended", assert(c:verify()).status)
      local res, err = c:generate("excel", { prompt = "x" })
      assert.is_nil(res)
      assert.equal("permission", err.kind)
      assert.equal("forbidden", err.code)
    end)

    it("insufficient_credits: 402 payment", function()
      emu:control("POST", "/overten/orgs/org_test", { credits_balance = 3 })
      local res, err = client():generate("excel", { prompt = "x" })
      assert.is_nil(res)
      assert.equal("payment", err.kind)
      assert.equal("insufficient_credits", err.code)
      assert.equal(402, err.status)
      assert.truthy(err.message:find("balance: 3", 1, true))
    end)

    it("preflight_failed: 400 with its missing list", function()
      local res, err = client():generate("slides", { prompt = "Deck with product screenshots" })
      assert.is_nil(res)
      assert.equal("validation", err.kind)
      assert.equal("preflight_failed", err.code)
      assert.same({ "images" }, err.missing)
    end)

    it("not_found and conflict", function()
      local c = client()
      local res, err = c:run("run_nope")
      assert.is_nil(res)
      assert.equal("not_found", err.kind)
      assert.equal("not_found", err.code)
      res, err = c:generate("word", { prompt = "resume", run_id = "run_nope" })
      assert.is_nil(res)
      assert.equal("not_found", err.code)
    end)

    it("422: FastAPI's detail list made readable", function()
      local res, err = client():generate("word", { prompt = "memo", mode = "shout" })
      assert.is_nil(res)
      assert.equal("validation", err.kind)
      assert.equal(422, err.status)
      assert.equal("body.mode: Input should be 'action' or 'ask'", err.message)
      assert.equal("mode", err.details[1].loc[2])
    end)

    it("429 with Retry-After, 413, 410 and 5xx from the API", function()
      local c = client{ max_retries = 0 }
      emu:fault{ path = "/api/v1/verify", type = "status", status = 429, retry_after = "120" }
      local res, err = c:verify()
      assert.is_nil(res)
      assert.equal("rate_limit", err.kind)
      assert.equal(120, err.retry_after)
      for status, kind in pairs{ [413] = "too_large", [410] = "gone", [503] = "server", [500] = "server" } do
        emu:fault{ path = "/api/v1/verify", type = "status", status = status }
        res, err = c:verify()
        assert.is_nil(res)
        assert.equal(kind, err.kind)
        assert.equal(status, err.status)
      end
      res, err = c:generate("word", { prompt = "memo #fail" })
      assert.is_nil(res)
      assert.equal("server", err.kind)
      assert.equal("upstream_error", err.code)
    end)
  end)
end)
