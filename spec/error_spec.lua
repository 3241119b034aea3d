local bearer = require "bearer"
local errors = require "bearer.error"

local function response(status, body, headers)
  return { status = status, body = body or "", headers = headers or {} }
end

-- `parser`: an API module's reader of its error bodies (they live with
-- the modules; bearer.error knows the generic conventions only).
local function parse(status, body, headers, parser)
  return errors.from_response(response(status, body, headers),
                              function(s) return s end, 1000, parser)
end
local overten = require("bearer.overten").parse_error
local optiverse = require("bearer.optiverse").parse_error

describe("bearer.error #unit", function()
  it("maps every documented status to its kind", function()
    local expect = {
      [400] = "validation", [401] = "auth", [402] = "payment", [403] = "permission",
      [404] = "not_found", [405] = "validation", [408] = "timeout", [409] = "conflict",
      [410] = "gone", [413] = "too_large", [422] = "validation", [429] = "rate_limit",
      [500] = "server", [501] = "server", [502] = "server", [503] = "server",
      [504] = "timeout", [599] = "server",
    }
    for status, kind in pairs(expect) do
      assert.equal(kind, errors.kind_for_status(status), status)
      assert.equal(kind, parse(status).kind)
    end
  end)

  it("reads Overten's envelope", function()
    local err = parse(401, '{"success":false,"error":"invalid_api_key","message":"Invalid API key."}',
                      { ["x-request-id"] = "req_7" }, overten)
    assert.equal("auth", err.kind)
    assert.equal("invalid_api_key", err.code)
    assert.equal("Invalid API key.", err.message)
    assert.equal(401, err.status)
    assert.equal("req_7", err.request_id)
    local pre = parse(400, '{"success":false,"error":"preflight_failed","message":"m","missing":["images"]}',
                      nil, overten)
    assert.equal("preflight_failed", pre.code)
    assert.same({ "images" }, pre.missing)
  end)

  it("reads the likely Optiverse shapes", function()
    for _, body in ipairs{
      '{"success":false,"error":{"code":"AUTH002","message":"Invalid API key"}}',
      '{"code":"AUTH002","message":"Invalid API key"}',
      '{"success":false,"error":"AUTH002","message":"Invalid API key"}',
    } do
      local err = parse(401, body, { ["request-id"] = "r1" }, optiverse)
      assert.equal("AUTH002", err.code)
      assert.equal("Invalid API key", err.message)
      assert.equal("r1", err.request_id)
    end
  end)

  it("makes FastAPI detail lists readable", function()
    local err = parse(422, '{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"missing"},'
                        .. '{"loc":["query","limit"],"msg":"must be <= 100","type":"le"}]}', nil, overten)
    assert.equal("validation", err.kind)
    assert.equal("http_422", err.code)
    assert.equal("body.prompt: field required; query.limit: must be <= 100", err.message)
    assert.equal(2, #err.details)
    assert.equal("not allowed", parse(403, '{"detail":"not allowed"}', nil, overten).message)
  end)

  it("redacts what the server echoes, in every field", function()
    local secret = "sk_live_0123456789abcdefABCDEF012345"
    local redact = function(s) return (s:gsub(secret, "[REDACTED]")) end
    local err = errors.from_response({ status = 422, headers = {}, body = '{"detail":[{"loc":["header",'
      .. '"authorization"],"msg":"bad","input":"Bearer ' .. secret .. '"}],"missing":["' .. secret .. '"]}' },
      redact, 0, overten)
    assert.equal("Bearer [REDACTED]", err.details[1].input)
    assert.equal("[REDACTED]", err.missing[1])
    assert.is_nil(err.body:find(secret, 1, true))
  end)

  it("copes with bodies that are not JSON", function()
    local err = parse(502, "<html>\n<h1>502 Bad Gateway</h1></html>")
    assert.equal("server", err.kind)
    assert.equal("http_502", err.code)
    assert.equal("<html>", err.message)
    assert.equal("HTTP 503", parse(503, "").message)
    assert.equal(203, #parse(500, string.rep("x", 500)).message)
  end)

  it("reads Retry-After as seconds or as an HTTP date", function()
    assert.equal(7, parse(429, "", { ["retry-after"] = "7" }).retry_after)
    -- clock at 1000: a date 30 s later
    local t = parse(503, "", { ["retry-after"] = "Thu, 01 Jan 1970 00:17:10 GMT" })
    assert.equal(30, t.retry_after)
    assert.equal(0, parse(503, "", { ["retry-after"] = "Thu, 01 Jan 1970 00:00:10 GMT" }).retry_after)
    assert.is_nil(parse(503, "", { ["retry-after"] = "soon" }).retry_after)
  end)

  it("takes only digits or an HTTP date for Retry-After", function()
    for _, v in ipairs{ "0x10", "3.7", "1e1", "-5", "+5", "5s", "", " " } do
      assert.is_nil(parse(503, "", { ["retry-after"] = v }).retry_after, v)
    end
    assert.equal(12, parse(503, "", { ["retry-after"] = " 12 " }).retry_after)
  end)

  it("reads the generic conventions without an API's parser", function()
    local err = parse(400, '{"error":"bad_thing","message":"it was bad"}')
    assert.same({ "bad_thing", "it was bad" }, { err.code, err.message })
    err = parse(400, '{"code":"E1","message":"m","detail":[{"msg":"x"}]}')
    assert.same({ "E1", "m" }, { err.code, err.message })
    assert.is_nil(err.details)   -- FastAPI's list is Overten's parser's business
  end)

  it("raises argument errors for caller mistakes", function()
    for _, call in ipairs{
      { "kind_for_status", function() return errors.kind_for_status("404") end },
      { "kind_for_status", function() return errors.kind_for_status(nil) end },
      { "kind_for_status", function() return errors.kind_for_status(404.5) end },
      { "from_response", function() return errors.from_response(nil) end },
      { "from_response", function() return errors.from_response({ status = "500" }) end },
      { "from_response", function() return errors.from_response({ status = 500, body = 5 }) end },
      { "from_response", function() return errors.from_response(response(500), "redact") end },
      { "from_response", function() return errors.from_response(response(500), nil, "now") end },
    } do
      local ok, msg = pcall(call[2])
      assert.is_false(ok)
      assert.truthy(tostring(msg):find("bad argument #%d to '" .. call[1] .. "'"), tostring(msg))
    end
    -- without redact and now: nothing hidden, dates against the wall clock
    assert.equal("server", errors.from_response(response(500)).kind)
  end)

  it("concatenates with strings on either side", function()
    local err = errors.new{ kind = "config", code = "c", message = "m" }
    assert.equal("failed: bearer: config error: c: m", "failed: " .. err)
    assert.equal("bearer: config error: c: m (at start)", err .. " (at start)")
    assert.equal(tostring(err) .. tostring(err), err .. err)
  end)

  it("prints one readable line", function()
    local err = parse(401, '{"error":"invalid_api_key","message":"bad\\nkey"}', { ["x-request-id"] = "req_1" })
    err.method, err.path, err.attempts = "GET", "/verify", 1
    local line = tostring(err)
    assert.equal("bearer: auth error: HTTP 401 invalid_api_key: bad key "
                 .. "[GET /verify; request_id=req_1; attempts=1]", line)
    assert.is_nil(line:find("\n"))
  end)

  it("prints long fields whole (the line's buffer grows)", function()
    local err = errors.new{ kind = "server", code = string.rep("c", 3000),
                            message = string.rep("m\n", 20000), method = "GET",
                            path = "/" .. string.rep("p", 9000), request_id = "r", attempts = 3 }
    local line = tostring(err)
    assert.equal(#"bearer: server error: " + 3000 + 2 + 40000 + #" [GET " + 9001
                 + #"; request_id=r; attempts=3]", #line)
    assert.is_nil(line:find("\n"))
  end)

  it("builds, checks and raises error objects", function()
    local err = errors.new{ kind = "task", code = "failed", message = "task failed" }
    assert.is_true(errors.is(err))
    assert.is_false(err.retryable)
    assert.is_false(errors.is({ kind = "task" }))
    assert.is_false(errors.is("x"))
    local ok, caught = pcall(error, err)
    assert.is_false(ok)
    assert.equal(err, caught)
    assert.has_error(function() errors.new{ kind = "nope" } end)
    assert.has_error(function() errors.new("x") end)
    assert.equal(bearer.error, errors)
  end)
end)
