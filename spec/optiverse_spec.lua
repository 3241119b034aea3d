local bearer = require "bearer"
local errors = require "bearer.error"
local optiverse = require "bearer.optiverse"
local emulator = require "support.emulator"
local subprocess = require "support.subprocess"

local KEY = emulator.OPTIVERSE_KEY
local MINUTES = "b7c4c322-2fd4-474b-8937-b46ff465e0af"    -- structured, every record
local DEBRIEF = "3f1d2a8e-6b7c-4d9e-8f0a-1b2c3d4e5f60"    -- structured, every 3rd
local EXECUTIVE = "eefc041d-58ea-4f8f-9119-fd4e9315ff0e"  -- unstructured, every 2nd
local STANDUP = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"    -- unstructured, every 5th
local NEWEST = "fac3aa94-3c3e-449f-8c1c-030e56d15cf0"
local UNKNOWN = "00000000-0000-4000-8000-000000000000"

describe("bearer.optiverse #unit", function()
  describe("parse_time", function()
    it("reads dates and date-times in UTC, with offsets and fractions", function()
      assert.same({ 1736812800, true }, { optiverse.parse_time("2025-01-14") })
      assert.same({ 1736848800, false }, { optiverse.parse_time("2025-01-14T10:00:00Z") })
      assert.equal(1736848800, optiverse.parse_time("2025-01-14T12:00:00+02:00"))
      assert.equal(1736848800, optiverse.parse_time("2025-01-14T04:30:00-05:30"))
      assert.equal(1736848800.25, optiverse.parse_time("2025-01-14T10:00:00.250Z"))
      assert.equal(951782400, optiverse.parse_time("2000-02-29"))
      assert.equal(0, optiverse.parse_time("1970-01-01T00:00:00Z"))
      assert.equal("2025-01-14T10:00:00Z", optiverse.format_time(1736848800))
    end)

    it("formats only times it can, with an argument error otherwise", function()
      for _, t in ipairs{ math.huge, -math.huge, 0 / 0, 1e300, "1736848800", nil } do
        local ok, msg = pcall(optiverse.format_time, t)
        assert.is_false(ok)
        assert.truthy(tostring(msg):find("bad argument #1 to 'format_time'", 1, true), tostring(msg))
      end
      assert.equal("9999-12-31T23:59:59Z", optiverse.format_time(253402300799))
    end)

    it("refuses other forms and out-of-range fields", function()
      for _, s in ipairs{ "2025-13-01", "2025-00-10", "2025-02-29", "1900-02-29", "2025-04-31",
                          "2025-01-00", "2025-01-14T24:00:00Z", "2025-01-14T10:60:00Z",
                          "2025-01-14T10:00:60Z", "2025-01-14T10:00:00", "2025-01-14T10:00Z",
                          "2025-01-14T10:00:00+24:00", "2025-01-14T10:00:00+02:60",
                          "2025-01-14T10:00:00+0200", "2025-01-14 10:00:00Z", "2025-1-14",
                          "2025-01-14T10:00:00.Z", "yesterday", "", "2025-01-14T10:00:00Zjunk" } do
        assert.is_nil(optiverse.parse_time(s), s)
      end
      assert.is_nil(optiverse.parse_time(1736848800))
    end)
  end)

  it("tells UUIDs", function()
    assert.is_true(optiverse.is_uuid(MINUTES))
    assert.is_true(optiverse.is_uuid(MINUTES:upper()))
    assert.is_false(optiverse.is_uuid("b7c4c322-2fd4-474b-8937-b46ff465e0a"))
    assert.is_false(optiverse.is_uuid("b7c4c3222fd4474b8937b46ff465e0af"))
    assert.is_false(optiverse.is_uuid("g7c4c322-2fd4-474b-8937-b46ff465e0af"))
  end)

  describe("error classification", function()
    local function classify(status, body, headers)
      local err = errors.from_response({ status = status, headers = headers or {}, body = body },
                                       function(s) return s end, 0)
      return optiverse.classify(err)
    end

    it("maps every documented code to its kind and keeps the code", function()
      for code, kind in pairs{ AUTH001 = "auth", AUTH002 = "auth", KEY001 = "conflict",
                               VAL001 = "validation", PERM001 = "not_found", SRV500 = "server" } do
        -- a status that disagrees: the code decides
        local err = classify(418, '{"success":false,"error":{"code":"' .. code .. '","message":"m"}}')
        assert.equal(kind, err.kind, code)
        assert.equal(code, err.code)
        assert.equal(418, err.status)
        assert.equal("m", err.message)
      end
    end)

    it("reads the code from every likely body shape", function()
      local shapes = {
        '{"success":false,"error":{"code":"PERM001","message":"x"}}',
        '{"code":"PERM001","message":"x"}',
        '{"success":false,"error":"PERM001","message":"x"}',
        '{"errors":[{"code":"PERM001","message":"x"}]}',
        '{"error":{"errorCode":"PERM001"}}',
        '{"errorCode":"PERM001"}',
        '{"success":false,"data":{"code":"PERM001"}}',
        'PERM001: Resource not found or access denied',
      }
      for _, body in ipairs(shapes) do
        local err = classify(400, body)
        assert.equal("PERM001", err.code, body)
        assert.equal("not_found", err.kind, body)
      end
    end)

    it("falls back to the HTTP status when no code can be found", function()
      local err = classify(503, "<html>Service Unavailable</html>")
      assert.equal("server", err.kind)
      assert.equal("http_503", err.code)
      err = classify(401, '{"message":"nope"}')
      assert.same({ "auth", "http_401", "nope" }, { err.kind, err.code, err.message })
      err = classify(404, "NOTACODE123 here")
      assert.same({ "not_found", "http_404" }, { err.kind, err.code })
      -- transport errors have no status and stay as they are
      local t = errors.new{ kind = "connection", code = "connect_failed" }
      assert.equal("connection", optiverse.classify(t).kind)
    end)
  end)

  describe("client construction", function()
    it("reads OPTIVERSE_API_KEY and OPTIVERSE_BASE_URL, with the documented default", function()
      local out, ok = subprocess.run([[
        local optiverse = require "bearer.optiverse"
        local ov = optiverse.client()
        print(ov.http:base_url(), ov:key():scheme(), tostring(ov:key()))
        local key = ov:key()
        ov:close()
        print("owned key closed:", key:is_closed())
      ]], { OPTIVERSE_API_KEY = KEY, OPTIVERSE_BASE_URL = "" })
      assert.is_true(ok, out)
      assert.truthy(out:find("https://api.optiverse.ai/external-api\toptiverse\t"
                             .. "bearer.Key(optiverse optiuser_v1_test...)", 1, true), out)
      assert.truthy(out:find("owned key closed:\ttrue", 1, true), out)
      out, ok = subprocess.run([[
        print(require("bearer.optiverse").client().http:base_url())
      ]], { OPTIVERSE_API_KEY = KEY, OPTIVERSE_BASE_URL = "http://127.0.0.1:9/external-api" })
      assert.is_true(ok, out)
      assert.truthy(out:find("http://127.0.0.1:9/external-api", 1, true), out)
    end)

    it("raises a config error object when there is no key", function()
      local out, ok = subprocess.run([[
        local ok, err = pcall(require("bearer.optiverse").client)
        print(ok, require("bearer").error.is(err), err.kind, err.code, err.message)
      ]], { OPTIVERSE_API_KEY = "" })
      assert.is_true(ok, out)
      assert.truthy(out:find("false\ttrue\tconfig\tmissing_key\t"
                             .. "no Optiverse API key: pass api_key or set OPTIVERSE_API_KEY", 1, true), out)
    end)

    it("takes a key string or a bearer.Key, and never closes a key it was given", function()
      local ok, err = pcall(optiverse.client, { api_key = "sk_live_x", base_url = "http://127.0.0.1:9" })
      assert.is_false(ok)
      assert.same({ "config", "invalid_key" }, { err.kind, err.code })
      local key = bearer.key(KEY)
      local ov = optiverse.client{ api_key = key, base_url = "http://127.0.0.1:9" }
      assert.equal(key, ov:key())
      ov:close()
      assert.is_false(key:is_closed())
      key:close()
    end)

    it("refuses other auth modes and unknown options", function()
      assert.has_error(function() optiverse.client{ api_key = KEY, auth = "x-api-key" } end,
                       "bad option 'auth' to 'client' (Optiverse takes only Authorization: Bearer)")
      assert.has_error(function() optiverse.client{ key = KEY } end,
                       "bad option 'key' to 'client' (use api_key)")
      assert.has_error(function() optiverse.client{ api_key = KEY, nope = 1 } end,
                       "bad option 'nope' to 'client' (unknown option)")
      assert.has_error(function() optiverse.client{ api_key = 42 } end,
                       "bad option 'api_key' to 'client' (bearer.Key or string expected, got number)")
    end)
  end)
end)

describe("bearer.optiverse #integration", function()
  local emu

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() emu:reset() end)

  -- A client of the emulator whose sleeps are recorded, not slept; with
  -- `fake_time`, sleeping advances a fake clock and the emulator's
  -- poll-limit clock together, so both judge spacing on one time line.
  local function client(opts)
    opts = opts or {}
    local slept, t = {}, 1e9
    opts.api_key = opts.api_key or KEY
    opts.base_url = opts.base_url or emu:optiverse_url()
    local hook = opts.on_sleep
    opts.on_sleep = nil
    opts.sleep = opts.sleep or function(s)
      slept[#slept + 1] = s
      t = t + s
      emu:control("POST", "/optiverse/clock", { advance = s })
      if hook then hook(s, #slept) end
    end
    opts.clock = opts.clock or function() return t end
    return optiverse.client(opts), slept, function() return t end
  end

  local function requests(path)
    return emu:requests("/external-api/v1/" .. (path or "list-records"))
  end

  local function all_optiverse_requests() return emu:count_under("/external-api/") end

  local function args(r)
    local out = {}
    for k, v in r.query:gmatch("([^&=]+)=([^&]*)") do out[k] = v end
    return out
  end

  local function collect(iter)
    local items = {}
    for item in iter do items[#items + 1] = item end
    return items
  end

  local function ids(items)
    local out = {}
    for i, item in ipairs(items) do out[i] = item.recordId end
    return out
  end

  local function page_body(data, pagination)
    return require("cjson").encode{ success = true, data = data, pagination = pagination }
  end

  describe("records", function()
    it("walks every page, 100 at a time, each record once, newest first", function()
      local ov = client()
      local recs = collect(ov:records())
      assert.equal(250, #recs)
      assert.equal(NEWEST, recs[1].recordId)
      assert.equal("06de0cb7-b7ea-44ae-93f5-732005e58ad2", recs[250].recordId)
      local seen = {}
      for _, r in ipairs(recs) do
        assert.is_nil(seen[r.recordId]); seen[r.recordId] = true
      end
      local log = requests()
      assert.equal(3, #log)
      for i, r in ipairs(log) do
        assert.same({ limit = "100", offset = tostring((i - 1) * 100) }, args(r))
        assert.equal("Bearer " .. KEY, r.headers.authorization)
      end
    end)

    it("keeps the filters and the caller's page size and start on every page", function()
      local ov = client()
      local recs = collect(ov:records{ dateFrom = "2026-01-01", dateTo = "2026-06-30T23:59:59Z",
                                       limit = 20, offset = 5 })
      local all = collect(ov:records{ dateFrom = "2026-01-01", dateTo = "2026-06-30T23:59:59Z" })
      assert.equal(#all - 5, #recs)
      assert.equal(all[6].recordId, recs[1].recordId)
      local log = requests()
      local pages = math.ceil(#recs / 20)
      assert.equal(pages + 1, #log)       -- the second walk took one page
      for i = 1, pages do
        assert.same({ dateFrom = "2026-01-01", dateTo = "2026-06-30T23%3A59%3A59Z", limit = "20",
                      offset = tostring(5 + (i - 1) * 20) }, args(log[i]))
      end
      for _, r in ipairs(recs) do
        assert.truthy(r.startDate >= "2026-01-01" and r.startDate <= "2026-06-30T23:59:59Z")
      end
    end)

    it("percent-encodes a date's + offset", function()
      local ov = client()
      assert(ov:records_page{ dateFrom = "2026-11-01T00:00:00+01:00" })
      assert.truthy(requests()[1].query:find("dateFrom=2026-11-01T00%3A00%3A00%2B01%3A00", 1, true))
    end)

    it("stops on hasMore == false even when total says more", function()
      emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 200,
        body = page_body({ { recordId = NEWEST } },
                         { total = 250, limit = 100, offset = 0, hasMore = false }) }
      assert.equal(1, #collect(client():records()))
      assert.equal(1, #requests())
    end)

    it("stops on offset + #data >= total when hasMore is absent or still true", function()
      emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 200,
        body = page_body({ { recordId = NEWEST }, { recordId = UNKNOWN } },
                         { total = 2, limit = 100, offset = 0 }) }
      assert.equal(2, #collect(client():records()))
      assert.equal(1, #requests())
      emu:reset()
      emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 200,
        body = page_body({ { recordId = NEWEST } }, { total = 1, hasMore = true }) }
      assert.equal(1, #collect(client():records()))
      assert.equal(1, #requests())
    end)

    it("stops on an empty page whatever the pagination claims", function()
      emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 200,
        body = page_body(setmetatable({}, require("cjson").array_mt or {}),
                         { total = 99, hasMore = true }) }
      assert.equal(0, #collect(client():records()))
      assert.equal(1, #requests())
    end)

    it("yields no record twice when records arrive during the walk (total grows)", function()
      -- The client-wide limiter sleeps before pages 2 and 3; the first
      -- sleep inserts 5 records at the head, shifting every offset by 5.
      local ov, slept = client{
        rate_limit = { requests = 1, per = 180 },
        on_sleep = function(_, n)
          if n == 1 then emu:control("POST", "/optiverse/records", { count = 5 }) end
        end,
      }
      local recs = collect(ov:records())
      assert.same({ 181, 181 }, slept)    -- per plus the limiter's 1 s margin
      local seen, seeded = {}, {}
      for _, r in ipairs(recs) do
        assert.is_nil(seen[r.recordId], "yielded twice: " .. r.recordId)
        seen[r.recordId] = true
      end
      emu:reset()
      for _, r in ipairs(collect(client():records())) do seeded[r.recordId] = true end
      assert.same(seeded, seen)           -- all 250 seeded ones, nothing lost, no repeat
      local log = requests()
      assert.equal(3, #log)
      assert.same({ "0", "100", "200" }, { args(log[1]).offset, args(log[2]).offset, args(log[3]).offset })
    end)

    it("stays exact while paging by hand with records_page and total changing", function()
      local ov = client()
      local p1 = assert(ov:records_page{ limit = 100, offset = 0 })
      assert.same({ 250, 100, 0, true },
                  { p1.pagination.total, p1.pagination.limit, p1.pagination.offset, p1.pagination.hasMore })
      emu:control("POST", "/optiverse/records", { count = 3 })
      local p2 = assert(ov:records_page{ limit = 100, offset = 100 })
      assert.equal(253, p2.pagination.total)
      -- the shift: page 2 starts with page 1's last three records
      assert.same(ids{ p1.data[98], p1.data[99], p1.data[100] },
                  ids{ p2.data[1], p2.data[2], p2.data[3] })
    end)

    it("raises a failed page's error object after yielding the pages before it", function()
      emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 500,
                 times = -1 }
      emu:clear_faults()
      local ov = client{ max_retries = 0 }
      local n = 0
      local ok, err = pcall(function()
        for _ in ov:records{ limit = 50 } do
          n = n + 1
          if n == 50 then
            emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 500 }
          end
        end
      end)
      assert.is_false(ok)
      assert.equal(50, n)
      assert.is_true(errors.is(err))
      assert.same({ "server", "SRV500", 500 }, { err.kind, err.code, err.status })
      assert.equal(2, #requests())
    end)
  end)

  describe("argument checks", function()
    local cases = {
      { "records_page", { limit = 0 }, "limit" },
      { "records_page", { limit = 101 }, "limit" },
      { "records_page", { limit = 2.5 }, "limit" },
      { "records_page", { limit = 0 / 0 }, "limit" },
      { "records_page", { offset = -1 }, "offset" },
      { "records_page", { offset = 1.5 }, "offset" },
      { "records_page", { dateFrom = "2025-13-01" }, "dateFrom" },
      { "records_page", { dateFrom = "2025-02-30" }, "dateFrom" },
      { "records_page", { dateTo = "2025-01-14T25:00:00Z" }, "dateTo" },
      { "records_page", { dateTo = "last week" }, "dateTo" },
      { "records_page", { dateFrom = "2025-06-02", dateTo = "2025-06-01" }, "dateFrom" },
      { "summaries_page", { protocolId = MINUTES, limit = 51 }, "limit" },
      { "summaries_page", { protocolId = MINUTES, limit = 0 }, "limit" },
      { "summaries_page", { protocolId = MINUTES, offset = -5 }, "offset" },
      { "summaries_page", { protocolId = "minutes" }, "protocolId" },
      { "summaries_page", {}, "protocolId" },
      { "summaries_page", { protocolId = MINUTES, recordId = "42" }, "recordId" },
      { "summaries_page", { protocolId = MINUTES, dateFrom = "2025-01-01T10:00:00" }, "dateFrom" },
      { "template", "b7c4c322", "protocolId" },
    }

    it("returns a validation error naming the parameter, and sends nothing", function()
      local ov = client()
      for _, case in ipairs(cases) do
        local method, arg, name = case[1], case[2], case[3]
        local res, err = ov[method](ov, arg)
        assert.is_nil(res, method)
        assert.is_true(errors.is(err), method)
        assert.same({ "validation", "invalid_argument", name }, { err.kind, err.code, err.argument })
        assert.equal(name, err.message:match("^(%w+) "))
      end
      assert.equal(0, all_optiverse_requests())
    end)

    it("accepts the edges of every range", function()
      local ov = client()
      assert(ov:records_page{ limit = 1, offset = 0 })
      assert(ov:records_page{ limit = 100, offset = 1000, dateFrom = "2025-01-01",
                              dateTo = "2025-01-01" })
      assert(ov:summaries_page{ protocolId = MINUTES:upper(), limit = 50, type = "structured" })
      assert(ov:summaries_page{ protocolId = MINUTES, limit = 1.0, dateFrom = "2025-01-01T00:00:00.5+00:00" })
      assert.equal("1", args(requests("summaries/structured")[2]).limit)   -- never "1.0"
    end)

    it("raises the validation error from the iterators, before any request", function()
      local ov = client()
      for _, call in ipairs{
        function() return ov:records{ limit = 500 } end,
        function() return ov:records{ dateFrom = "2025-1-1" } end,
        function() return ov:summaries{ protocolId = MINUTES, limit = 100 } end,
        function() return ov:summaries{ recordId = NEWEST } end,
        function() return ov:watch_records{ since = "soon" } end,
        function() return ov:watch_records{ since = "2026-01-01", limit = 101 } end,
        function() return ov:watch_records{ until_time = "tomorrow" } end,
      } do
        local ok, err = pcall(call)
        assert.is_false(ok)
        assert.is_true(errors.is(err), tostring(err))
        assert.equal("validation", err.kind)
      end
      assert.equal(0, all_optiverse_requests())
    end)

    it("raises for unknown filters and wrong types (caller mistakes)", function()
      local ov = client()
      assert.has_error(function() ov:records{ from = "2025-01-01" } end,
                       "bad option 'from' to 'records' (unknown filter)")
      assert.has_error(function() ov:records_page{ limit = "10" } end,
                       "bad option 'limit' to 'records_page' (number expected, got string)")
      assert.has_error(function() ov:records("2025") end,
                       "bad argument #1 to 'records' (table expected, got string)")
      assert.has_error(function() ov:summaries{ protocolId = MINUTES, type = "markdown" } end,
                       "bad option 'type' to 'summaries' ('structured' or 'unstructured' expected, got 'markdown')")
      assert.has_error(function() ov:summaries_page{ protocolId = MINUTES, since = "x" } end,
                       "bad option 'since' to 'summaries_page' (unknown filter)")
      assert.has_error(function() ov:template(42) end,
                       "bad argument #1 to 'template' (string expected, got number)")
      assert.equal(0, all_optiverse_requests())
    end)
  end)

  describe("templates and summaries", function()
    it("lists templates of both types", function()
      local list = assert(client():templates())
      assert.equal(4, #list)
      local types = {}
      for _, t in ipairs(list) do types[t.summaryType] = (types[t.summaryType] or 0) + 1 end
      assert.same({ structured = 2, unstructured = 2 }, types)
    end)

    it("picks the endpoint from summaryType, looked up once per client", function()
      local ov = client()
      local s = collect(ov:summaries{ protocolId = MINUTES, recordId = NEWEST })
      assert.equal(1, #s)
      assert.equal("Action Items", s[1].sections[1].title)
      assert.equal("string", type(s[1].sections[1].answers[1].answer))
      local u = collect(ov:summaries{ protocolId = EXECUTIVE, limit = 10 })
      assert.equal(125, #u)
      assert.truthy(u[1].summary:find("^## Meeting Summary"))
      assert(ov:summaries_page{ protocolId = STANDUP })
      assert(ov:template(DEBRIEF))
      assert.equal(1, #requests("protocol-templates"))
      assert.equal(1, #requests("summaries/structured"))
      assert.equal(13 + 1, #requests("summaries/unstructured"))
    end)

    it("needs no template lookup when the caller gives the type", function()
      local ov = client()
      assert.equal(83, #collect(ov:summaries{ protocolId = DEBRIEF, type = "structured" }))
      assert.equal(0, #requests("protocol-templates"))
    end)

    it("pages without hasMore stop on total", function()
      local ov = client()
      assert.equal(250, #collect(ov:summaries{ protocolId = MINUTES, type = "structured" }))
      local log = requests("summaries/structured")
      assert.equal(5, #log)              -- 250 / 50: no sixth, empty page
      assert.equal("200", args(log[5]).offset)
      local page = assert(ov:summaries_page{ protocolId = MINUTES, offset = 240 })
      assert.is_nil(page.pagination.hasMore)
      assert.equal(10, #page.data)
    end)

    it("an unknown template is not_found: from the cache, or from the API with type", function()
      local ov = client()
      local ok, err = pcall(collect, ov:summaries{ protocolId = UNKNOWN })
      assert.is_false(ok)
      assert.same({ "not_found", "unknown_template" }, { err.kind, err.code })
      local _, e2 = ov:template(UNKNOWN:upper())
      assert.equal("unknown_template", e2.code)
      -- an unknown id refreshes the cache (it may be new), a known one does not
      assert.equal(2, #requests("protocol-templates"))
      ok, err = pcall(collect, ov:summaries{ protocolId = UNKNOWN, type = "unstructured" })
      assert.is_false(ok)
      assert.same({ "not_found", "PERM001", 404 }, { err.kind, err.code, err.status })
    end)
  end)

  describe("error codes from the API", function()
    local function fault(status, code)
      emu:fault{ path = "/external-api/v1/list-records", type = "status", status = status,
        body = '{"success":false,"error":{"code":"' .. code .. '","message":"from the API"}}' }
    end

    it("AUTH002: an unknown key", function()
      local ov = client{ api_key = "optiuser_v1_not_a_real_key_000000" }
      local res, err = ov:records_page{}
      assert.is_nil(res)
      assert.same({ "auth", "AUTH002", 401 }, { err.kind, err.code, err.status })
      assert.falsy(tostring(err):find("not_a_real_key", 1, true))
    end)

    it("AUTH001: no Authorization header", function()
      local ov = client()
      local _, err = ov.http:get("/v1/list-records", { credentials = false })
      err = optiverse.classify(err)
      assert.same({ "auth", "AUTH001", 401 }, { err.kind, err.code, err.status })
      fault(401, "AUTH001")
      _, err = ov:records_page{}
      assert.same({ "auth", "AUTH001" }, { err.kind, err.code })
    end)

    it("KEY001, VAL001, PERM001, SRV500", function()
      local ov = client{ max_retries = 0 }
      for _, c in ipairs{ { 409, "KEY001", "conflict" }, { 400, "VAL001", "validation" },
                          { 404, "PERM001", "not_found" }, { 500, "SRV500", "server" } } do
        fault(c[1], c[2])
        local res, err = ov:records_page{}
        assert.is_nil(res)
        assert.same({ c[3], c[2], c[1], "from the API" }, { err.kind, err.code, err.status, err.message })
      end
      -- and the emulator's own answers for a template and a record it does not know
      local _, err = ov:summaries_page{ protocolId = MINUTES, recordId = UNKNOWN }
      assert.same({ "not_found", "PERM001" }, { err.kind, err.code })
    end)

    it("an undocumented body falls back to the status", function()
      emu:fault{ path = "/external-api/v1/protocol-templates", type = "status", status = 502,
                 body = "Bad Gateway", content_type = "text/plain" }
      local _, err = client{ max_retries = 0 }:templates()
      assert.same({ "server", "http_502" }, { err.kind, err.code })
    end)

    it("a 200 without a data array is a decode error", function()
      emu:fault{ path = "/external-api/v1/protocol-templates", type = "status", status = 200,
                 body = '{"success":true}' }
      local _, err = client():templates()
      assert.same({ "decode", "unexpected_response" }, { err.kind, err.code })
    end)
  end)

  describe("client-wide rate limit", function()
    it("makes every call wait its turn instead of being refused", function()
      emu:config{ optiverse_poll_limit = { requests = 1, per = 180 } }
      local ov, slept = client{ rate_limit = { requests = 1, per = 180 } }
      assert(ov:templates())
      assert(ov:records_page{ limit = 1 })
      assert(ov:summaries_page{ protocolId = MINUTES })
      assert.same({ 181, 181 }, slept)    -- per plus the limiter's 1 s margin
      assert.equal(3, all_optiverse_requests())
    end)

    it("is off by default: one-off reads are not spaced", function()
      local ov, slept = client()
      assert(ov:templates())
      assert(ov:records_page{ limit = 1 })
      assert.same({}, slept)
    end)
  end)

  describe("watch_records", function()
    local SINCE = "2026-11-01T00:00:00Z"   -- 7 seeded records from here on

    -- Request start times on the fake clock, from the client's trace.
    local function timed_client(opts)
      local times = {}
      local now
      opts = opts or {}
      opts.log = function(line)
        if line:find("^bearer: > GET .*/list%-records") then times[#times + 1] = now() end
      end
      local ov, slept, clock = client(opts)
      now = clock
      return ov, slept, times
    end

    it("polls every 180 s by default and never trips the API's limit", function()
      emu:config{ optiverse_poll_limit = { requests = 1, per = 180 } }
      local errs = {}
      local ov, slept, times = timed_client()
      local recs = collect(ov:watch_records{ since = SINCE, max_polls = 5,
                                             on_error = function(e) errs[#errs + 1] = e end })
      assert.equal(7, #recs)
      assert.same({ 180, 180, 180, 180 }, slept)
      assert.same({}, errs)                 -- no 429 from the emulator
      assert.equal(5, #times)
      for i = 2, #times do assert.is_true(times[i] - times[i - 1] >= 180) end
    end)

    it("yields each record at or after since once, oldest first, new ones as they come", function()
      local ov = client{ on_sleep = function(_, n)
        if n == 1 then emu:control("POST", "/optiverse/records", { count = 3 }) end
        if n == 3 then emu:control("POST", "/optiverse/records", { count = 1 }) end
      end }
      local got = {}
      for rec in ov:watch_records{ since = SINCE, max_polls = 5 } do got[#got + 1] = rec end
      assert.equal(7 + 3 + 1, #got)
      local seen = {}
      for i, r in ipairs(got) do
        assert.is_nil(seen[r.recordId]); seen[r.recordId] = true
        assert.truthy(r.createdAt >= SINCE)
        if i > 1 then assert.truthy(got[i - 1].createdAt < r.createdAt) end
      end
      assert.equal(NEWEST, got[7].recordId)
      for _, r in ipairs(requests()) do assert.equal("2026-11-01T00%3A00%3A00Z", args(r).dateFrom) end
    end)

    it("walks every page on the first poll, then stops at the first page with a seen record", function()
      local ov = client{ on_sleep = function(_, n)
        if n == 5 then emu:control("POST", "/optiverse/records", { count = 7 }) end
      end }
      -- 7 records since SINCE, pages of 2: the first poll takes 4 pages
      local got = collect(ov:watch_records{ since = SINCE, limit = 2, max_polls = 3 })
      assert.equal(14, #got)
      local offsets = {}
      for i, r in ipairs(requests()) do offsets[i] = args(r).offset end
      -- poll 1: 0 2 4 6; poll 2: 0 (seen at once); poll 3: 0 2 4 6 (7 new, then seen)
      assert.same({ "0", "2", "4", "6", "0", "0", "2", "4", "6" }, offsets)
    end)

    it("spaces every request, pages of one poll included", function()
      local ov, slept, times = timed_client()
      collect(ov:watch_records{ since = SINCE, limit = 3, max_polls = 2 })
      assert.same({ 180, 180, 180 }, slept)   -- pages 2 and 3, then poll 2
      assert.equal(4, #times)
    end)

    it("does not yield records older than since that the list returns anyway", function()
      emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 200,
        body = page_body({ { recordId = NEWEST, createdAt = "2026-11-20T08:30:00Z" },
                           { recordId = UNKNOWN, createdAt = "2026-10-31T23:59:59Z" } },
                         { total = 2, hasMore = false }) }
      local got = collect(client():watch_records{ since = SINCE, max_polls = 1 })
      assert.same({ NEWEST }, ids(got))
    end)

    it("backs off after 5xx and timeouts, with one request per attempt", function()
      local errs, delays = {}, {}
      local ov, slept = client{ timeout = 0.3, on_sleep = function(_, n)
        if n == 1 then
          emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 503 }
          emu:fault{ path = "/external-api/v1/list-records", type = "slow", delay = 1 }
        end
      end }
      local got = collect(ov:watch_records{ since = SINCE, max_polls = 4,
        on_error = function(e, d) errs[#errs + 1] = e.kind; delays[#delays + 1] = d end })
      assert.equal(7, #got)
      assert.same({ "server", "timeout" }, errs)
      assert.same({ 360, 720 }, delays)
      -- a failure's wait counts from the failed request's start
      assert.same({ 180, 360, 720 }, slept)
      assert.equal(4, #requests())          -- the client's own retries stayed off
      -- and the client keeps its own two retries for other calls
      for _ = 1, 2 do
        emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 503 }
      end
      assert(ov:records_page{ limit = 1 })
      assert.equal(7, #requests())
    end)

    it("backs off while the API cannot be reached", function()
      local errs, delays = {}, {}
      local ov, slept = client{ base_url = "http://127.0.0.1:1/external-api" }
      local got = collect(ov:watch_records{ since = SINCE, max_polls = 3,
        on_error = function(e, d) errs[#errs + 1] = e.kind; delays[#delays + 1] = d end })
      assert.equal(0, #got)
      assert.same({ "connection", "connection", "connection" }, errs)
      assert.same({ 360, 720, 1440 }, delays)
      assert.same({ 360, 720 }, slept)
    end)

    it("caps the backoff at max_backoff", function()
      local delays = {}
      emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 500, times = 4 }
      local ov = client()
      local got = collect(ov:watch_records{ since = SINCE, max_polls = 5, max_backoff = 1000,
        on_error = function(_, d) delays[#delays + 1] = d end })
      assert.same({ 360, 720, 1000, 1000 }, delays)
      assert.equal(7, #got)
    end)

    it("honours Retry-After on 429 (never below the interval)", function()
      local delays = {}
      emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 429,
                 retry_after = "600" }
      emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 503,
                 retry_after = "5" }
      local ov, slept = client()
      local got = collect(ov:watch_records{ since = SINCE, max_polls = 3,
        on_error = function(e, d) delays[#delays + 1] = { e.kind, e.retry_after, d } end })
      assert.same({ { "rate_limit", 600, 600 }, { "server", 5, 180 } }, delays)
      assert.same({ 600, 180 }, slept)
      assert.equal(7, #got)
    end)

    it("recovers from the emulator's real poll limit when polling faster on a higher limit", function()
      emu:config{ optiverse_poll_limit = { requests = 1, per = 180 } }
      local errs = {}
      local ov, slept = client()
      local got = collect(ov:watch_records{ since = SINCE, interval = 60, i_have_a_higher_limit = true,
        max_polls = 3, on_error = function(e, d) errs[#errs + 1] = { e.code, e.retry_after, d } end })
      assert.same({ { "RATE001", 120, 120 } }, errs)
      assert.same({ 60, 120 }, slept)
      assert.equal(7, #got)
    end)

    it("raises auth and validation errors instead of retrying them", function()
      for _, c in ipairs{ { 401, "auth" }, { 400, "validation" }, { 404, "not_found" } } do
        emu:reset()
        local ov = client{ on_sleep = function()
          emu:fault{ path = "/external-api/v1/list-records", type = "status", status = c[1] }
        end }
        local n = 0
        local ok, err = pcall(function()
          for _ in ov:watch_records{ since = SINCE, max_polls = 5 } do n = n + 1 end
        end)
        assert.is_false(ok)
        assert.equal(c[2], err.kind)
        assert.equal(7, n)
        assert.equal(2, #requests())
      end
    end)

    it("gives up after max_failures failures in a row", function()
      emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 500, times = 3 }
      local ok, err = pcall(collect, client():watch_records{ since = SINCE, max_failures = 2 })
      assert.is_false(ok)
      assert.equal("server", err.kind)
      assert.equal(3, #requests())
    end)

    it("stops at until_time without sleeping past it", function()
      local ov, slept, clock = client()
      local start = clock()
      local got = collect(ov:watch_records{ since = SINCE, until_time = start + 500 })
      assert.equal(7, #got)
      assert.same({ 180, 180 }, slept)      -- polls at +0, +180, +360; +540 is past the end
      assert.equal(3, #requests())
      got = collect(ov:watch_records{ since = SINCE,
                                      until_time = optiverse.format_time(clock() - 1) })
      assert.equal(0, #got)
    end)

    it("defaults since to now on the client's clock", function()
      local ov = client{ clock = function() return optiverse.parse_time("2026-11-20T00:00:00Z") end }
      local got = collect(ov:watch_records{ max_polls = 1 })
      assert.same({ NEWEST }, ids(got))
      assert.equal("2026-11-20T00%3A00%3A00Z", args(requests()[1]).dateFrom)
    end)

    it("refuses to poll faster than 180 s unless told the key allows it", function()
      local ov = client()
      assert.has_error(function() ov:watch_records{ interval = 60 } end,
        "bad option 'interval' to 'watch_records' (60 s is faster than Optiverse allows "
        .. "(one request per 180 s); pass i_have_a_higher_limit = true if your key has a higher limit)")
      assert.has_error(function() ov:watch_records{ interval = 0, i_have_a_higher_limit = true } end,
        "bad option 'interval' to 'watch_records' (positive number of seconds expected)")
      assert.has_error(function() ov:watch_records{ every = 180 } end,
        "bad option 'every' to 'watch_records' (unknown option)")
      assert.has_error(function() ov:watch_records{ max_polls = 0 } end,
        "bad option 'max_polls' to 'watch_records' (integer >= 1 expected, got 0)")
      assert.has_error(function() ov:watch_records{ interval = 200, max_backoff = 100 } end,
        "bad option 'max_backoff' to 'watch_records' (at least interval expected)")
      assert.equal(0, all_optiverse_requests())
    end)
  end)

  it("examples/optiverse_records.lua prints this week's meetings", function()
    local out, ok = subprocess.run(assert(io.open(emulator.ROOT .. "/examples/optiverse_records.lua")):read("a"), {
      OPTIVERSE_API_KEY = KEY, OPTIVERSE_BASE_URL = emu:optiverse_url(),
      BEARER_DEMO_NOW = "2026-11-20T18:00:00Z" })
    assert.is_true(ok, out)
    assert.truthy(out:find("2026-11-20T08:30:00Z  Onboarding: Northwind", 1, true), out)
    assert.truthy(out:find("2026-11-14T14:30:00Z", 1, true), out)
    assert.falsy(out:find("2026-11-11", 1, true), out)
    assert.truthy(out:find("validation error: invalid_argument: limit", 1, true), out)
  end)
end)

describe("bearer.optiverse redaction #integration", function()
  local emu
  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)

  it("keeps the key out of an unexpected response's error message", function()
    emu:fault{ path = "/external-api/v1/list-records", type = "status", status = 200,
               content_type = "application/json",
               body = '{"echo":"Bearer ' .. emulator.OPTIVERSE_KEY .. '"}' }
    local ov = optiverse.client{ api_key = emulator.OPTIVERSE_KEY, base_url = emu:optiverse_url() }
    local page, err = ov:records_page{ limit = 5 }
    assert.is_nil(page)
    assert.equal("decode", err.kind)
    assert.is_nil(tostring(err):find(emulator.OPTIVERSE_KEY, 1, true))
    assert.truthy(err.message:find("[REDACTED]", 1, true))
  end)
end)
