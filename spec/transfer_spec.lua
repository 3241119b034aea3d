-- Streaming to a file, multipart bodies and sending without the key: the
-- transfer features the API modules (downloads, uploads) build on.
local bearer = require "bearer"
local emulator = require "support.emulator"
local files = require "support.files"

describe("transfers #integration", function()
  local emu, dir
  setup(function()
    emu = emulator.start()
    dir = files.tmpdir()
  end)
  teardown(function()
    emu:stop()
    files.remove(dir)
  end)
  before_each(function() emu:reset() end)

  local function client(opts)
    opts = opts or {}
    opts.base_url = emu.url
    opts.key = opts.key or emulator.OVERTEN_KEY
    opts.sleep = function() end
    return bearer.client(opts)
  end

  local read = files.read

  it("streams a 2xx body to a new file instead of memory", function()
    emu:fault{ path = "/echo/big", type = "huge", bytes = 5 * 1024 * 1024 }
    local path = dir .. "/big.bin"
    local res = assert(client{ max_response_bytes = 1024 }:get("/echo/big",
                       { sink = path, max_bytes = 8 * 1024 * 1024 }))
    assert.equal(200, res.status)
    assert.equal("", res.body)
    assert.equal(5 * 1024 * 1024, res.bytes)
    assert.equal(5 * 1024 * 1024, #read(path))
  end)

  it("keeps an error body in memory and leaves the file empty", function()
    emu:fault{ path = "/echo/e", type = "status", status = 404 }
    local path = dir .. "/err.bin"
    local res, err = client():get("/echo/e", { sink = path })
    assert.is_nil(res)
    assert.equal("not_found", err.kind)
    assert.equal("", read(path))
    os.remove(path)
  end)

  it("refuses to overwrite an existing file", function()
    local path = dir .. "/exists"
    io.open(path, "w"):close()
    local res, err = client():get("/echo/x", { sink = path })
    assert.is_nil(res)
    assert.equal("write_failed", err.code)
    assert.equal(0, #emu:requests())
    os.remove(path)
  end)

  it("starts a retried download afresh", function()
    emu:fault{ path = "/echo/r", type = "truncate" }
    local path = dir .. "/retry.bin"
    local res = assert(client():get("/echo/r", { sink = path }))
    assert.equal(200, res.status)
    assert.equal(res.bytes, #read(path))
    assert.equal(2, #emu:requests("/echo/r"))
    os.remove(path)
  end)

  it("sends multipart forms with files streamed from disk", function()
    local path = dir .. "/data.csv"
    local f = io.open(path, "w")
    f:write("a,b\n1,2\n")
    f:close()
    local res = assert(client():post("/echo/upload", { form = {
      { name = "purpose", value = "reference" },
      { name = "file", file = path, type = "text/csv" },
      { name = "other", file = path, filename = "renamed.csv" },
    } }))
    local echo = res.json
    assert.truthy(echo.headers["content-type"]:find("^multipart/form%-data; boundary="))
    assert.truthy(echo.body:find('name="purpose"\r\n\r\nreference', 1, true))
    assert.truthy(echo.body:find('name="file"; filename="data.csv"\r\nContent-Type: text/csv\r\n\r\n'
                                 .. 'a,b\n1,2\n', 1, true))
    assert.truthy(echo.body:find('filename="renamed.csv"', 1, true))
  end)

  it("returns an error for an unreadable file and raises for malformed parts", function()
    local res, err = client():post("/echo/upload", { form = { { name = "file", file = dir .. "/missing" } } })
    assert.is_nil(res)
    assert.equal("file_unreadable", err.code)
    assert.equal(0, #emu:requests())
    local c = client()
    assert.has_error(function() c:post("/echo/u", { form = { "x" } }) end)
    assert.has_error(function() c:post("/echo/u", { form = { { value = "x" } } }) end)
    assert.has_error(function() c:post("/echo/u", { form = { { name = "a" } } }) end)
    assert.has_error(function() c:post("/echo/u", { form = { { name = "a", value = "v", file = "f" } } }) end)
    assert.has_error(function() c:post("/echo/u", { body = "x", form = {} }) end)
  end)

  it("can send a request without the key", function()
    local res = assert(client():get("/echo/anon", { credentials = false }))
    assert.is_nil(res.json.headers.authorization)
    res = assert(client():get("/echo/with"))
    assert.truthy(res.json.headers.authorization)
  end)
end)
