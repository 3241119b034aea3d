-- The public surface every API module builds on, as users see it:
-- with_options views, response metadata, integers, JSON arrays, BEARER_LOG.
local bearer = require "bearer"
local emulator = require "support.emulator"
local subprocess = require "support.subprocess"

local KEY = emulator.OVERTEN_KEY

describe("client surface #integration", function()
  local emu
  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function() emu:reset() end)

  local function client(opts)
    opts = opts or {}
    opts.base_url = opts.base_url or emu.url
    opts.key = opts.key or KEY
    opts.sleep = function() end
    return bearer.client(opts)
  end

  describe("with_options", function()
    it("is a view on the same connection with other per-call settings", function()
      local c = client()
      local quick = c:with_options{ timeout = 2, max_retries = 0, headers = { ["X-Trace"] = "abc" } }
      local a = assert(c:get("/echo/a"))
      local b = assert(quick:get("/echo/b"))
      assert.is_nil(a.json.headers["x-trace"])
      assert.equal("abc", b.json.headers["x-trace"])
      local seen = emu:requests()
      assert.equal(seen[1].connection, seen[2].connection)
      -- max_retries = 0 on the view only
      emu:fault{ path = "/echo/r", type = "status", status = 503 }
      local _, err = quick:get("/echo/r")
      assert.equal(1, err.attempts)
      emu:fault{ path = "/echo/r", type = "status", status = 503 }
      assert(c:get("/echo/r"))
      assert.equal(3, #emu:requests("/echo/r"))
      -- same key, base URL; closing the view leaves the client open
      assert.equal(c:key(), quick:key())
      assert.equal(c:base_url(), quick:base_url())
      quick:close()
      assert(c:get("/echo/after"))
    end)

    it("refuses unknown names and bad values like the constructor", function()
      local c = client()
      assert.has_error(function() c:with_options{ nope = 1 } end,
                       "bad option 'nope' to 'with_options' (unknown option)")
      assert.has_error(function() c:with_options{ base_url = "http://x" } end,
                       "bad option 'base_url' to 'with_options' (unknown option)")
      assert.has_error(function() c:with_options{ max_retries = -1 } end)
      assert.has_error(function() c:with_options{ timeout = "2" } end)
      assert.has_error(function() c:with_options("x") end)
    end)

    it("exists on every API client", function()
      local overten = require "bearer.overten"
      local ot = overten.client{ api_key = KEY, base_url = emu:overten_url(), sleep = function() end }
      local v = ot:with_options{ headers = { ["X-Trace"] = "ot" }, max_retries = 0 }
      assert.equal("org_test", assert(v:verify()).org_id)
      assert.equal("ot", emu:requests("/api/v1/verify")[1].headers["x-trace"])
      assert.has_error(function() ot:with_options{ api_key = KEY } end,
                       "bad option 'api_key' to 'with_options' (unknown option)")

      local optiverse = require "bearer.optiverse"
      local op = optiverse.client{ api_key = emulator.OPTIVERSE_KEY, base_url = emu:optiverse_url() }
      assert(op:with_options{ timeout = 5 }:records_page{ limit = 1 })
      do
        -- a view closes nothing, and what it learns (the template cache) is the client's
        local view <close> = op:with_options{ max_retries = 0 }
        assert(view:templates())
      end
      emu:control("DELETE", "/requests")
      assert(op:template("b7c4c322-2fd4-474b-8937-b46ff465e0af"))
      assert.equal(0, #emu:requests())
      assert.has_error(function() op:with_options{ rate_limit = {} } end)

      -- a well-formed (unsigned) Firebase token: the admin view is checked
      -- for its construction, not sent
      local token = "eyJhbGciOiJSUzI1NiJ9." .. "eyJzdWIiOiJ4In0" .. ".c2ln"
      local admin = overten.admin{ firebase_token = token, base_url = emu:overten_url() }
      local av = admin:with_options{ headers = { ["X-Trace"] = "admin" } }
      assert.is_function(av.create_key)
      assert.has_error(function() admin:with_options{ token_provider = print } end)
      ot:close()
      op:close()
      admin:close()
    end)
  end)

  describe("bearer.response_of", function()
    it("gives status, headers, request id, attempts and time for what a call returned", function()
      local c = client()
      local res = assert(c:get("/echo/m"))
      local meta = bearer.response_of(res)
      assert.equal(200, meta.status)
      assert.equal(1, meta.attempts)
      assert.is_number(meta.time)
      assert.is_table(meta.headers)
      assert.equal(meta, bearer.response_of(res.json))
      assert.is_nil(bearer.response_of({}))
      assert.is_nil(bearer.response_of("x"))

      local overten = require "bearer.overten"
      local ot = overten.client{ api_key = KEY, base_url = emu:overten_url(), sleep = function() end }
      emu:fault{ path = "/api/v1/verify", type = "status", status = 503 }
      local org = assert(ot:verify())
      local m = bearer.response_of(org)
      assert.same({ 200, 2 }, { m.status, m.attempts })
      assert.is_string(m.request_id)
      for page in ot:runs():pages() do
        assert.equal(200, bearer.response_of(page).status)
      end
      ot:close()
    end)

    it("works on pages of either API's lists", function()
      local optiverse = require "bearer.optiverse"
      local op = optiverse.client{ api_key = emulator.OPTIVERSE_KEY, base_url = emu:optiverse_url() }
      local page = assert(op:records_page{ limit = 2 })
      assert.equal(200, bearer.response_of(page).status)
      assert.equal(200, bearer.response_of(assert(op:templates())).status)
      op:close()
    end)
  end)

  describe("one pager for both APIs", function()
    it("iterates items, pages and all() the same way on Overten and Optiverse", function()
      local overten = require "bearer.overten"
      local optiverse = require "bearer.optiverse"
      local ot = overten.client{ api_key = KEY, base_url = emu:overten_url(), sleep = function() end }
      local op = optiverse.client{ api_key = emulator.OPTIVERSE_KEY, base_url = emu:optiverse_url() }
      for _, list in ipairs{ function() return ot:runs{ limit = 2 } end,
                             function() return op:records{ limit = 2 } end } do
        local items = 0
        for item in list() do
          assert.is_table(item)
          items = items + 1
        end
        local pages, from_pages = 0, 0
        for page in list():pages() do
          pages = pages + 1
          from_pages = from_pages + #page.data
          assert.equal(200, bearer.response_of(page).status)
        end
        assert.is_true(items > 2, "more than one page")
        assert.is_true(pages > 1)
        assert.equal(items, from_pages)
        assert.equal(items, #list():all())
      end
      -- nothing is fetched before the first item is asked for
      emu:control("DELETE", "/requests")
      local lazy = op:records{ limit = 2 }
      ot:runs()
      assert.equal(0, #emu:requests())
      assert.is_table(lazy())
      assert.equal(1, #emu:requests())
      ot:close()
      op:close()
    end)
  end)

  describe("numbers and arrays", function()
    it("gives integers for integral JSON numbers (Lua 5.3+)", function()
      if not math.type then return end
      local optiverse = require "bearer.optiverse"
      local op = optiverse.client{ api_key = emulator.OPTIVERSE_KEY, base_url = emu:optiverse_url() }
      local page = assert(op:records_page{ limit = 2 })
      assert.equal("integer", math.type(page.pagination.total))
      assert.equal(tostring(math.tointeger(page.pagination.total)), tostring(page.pagination.total))
      local doc = require("bearer.json").decode('{"a":1,"b":2.5,"c":[3,4.0],"d":1e300}')
      assert.same({ "integer", "float", "integer", "integer", "float" },
                  { math.type(doc.a), math.type(doc.b), math.type(doc.c[1]), math.type(doc.c[2]),
                    math.type(doc.d) })
      op:close()
    end)

    it("sends an empty table marked with bearer.array as []", function()
      local res = assert(client():post("/echo/a", { json = { tags = bearer.array({}), meta = {},
                                                             ids = bearer.array{ 1, 2 } } }))
      local body = res.json.body
      assert.truthy(body:find('"tags":[]', 1, true), body)
      assert.truthy(body:find('"meta":{}', 1, true), body)
      assert.truthy(body:find('"ids":[1,2]', 1, true), body)
      -- a caller's string that looks like the marker stays a string
      res = assert(client():post("/echo/a", { json = { s = "[]" } }))
      assert.truthy(res.json.body:find('"s":"[]"', 1, true))
      assert.has_error(function() bearer.array("x") end)
    end)
  end)

  describe("BEARER_LOG", function()
    it("prints one line per call at info, and the headers too at debug", function()
      local code = ([[
        local bearer = require "bearer"
        local c = bearer.client{ base_url = %q, key = %q, sleep = function() end }
        assert(c:get("/echo/x?token=" .. %q))
        local _, err = c:get("/echo/nope-" .. %q, { max_retries = 0, headers = { ["X-Fail"] = "1" } })
      ]]):format(emu.url, KEY, KEY, KEY)
      local out, ok = subprocess.run(code, { BEARER_LOG = "info" })
      assert.is_true(ok, out)
      local lines = {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.equal(2, #lines, out)
      assert.truthy(lines[1]:find("^bearer: GET /echo/x 200 %d+%.%d+s attempts=1 request_id="), lines[1])
      assert.truthy(lines[2]:find("^bearer: GET /echo/nope%-%[REDACTED%] 200"), lines[2])
      assert.is_nil(out:find(KEY, 1, true))
      assert.is_nil(out:find("Authorization", 1, true))
      local debug_out = subprocess.run(code, { BEARER_LOG = "debug" })
      assert.truthy(debug_out:find("Authorization: [REDACTED]", 1, true))
      assert.is_nil(debug_out:find(KEY, 1, true))
    end)
  end)
end)
