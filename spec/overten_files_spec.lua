-- bearer.overten transfers: streamed downloads that never leave a half
-- file and never send the key to the storage host, multipart uploads,
-- file conversion, run export and images.
local overten = require "bearer.overten"
local emulator = require "support.emulator"
local files = require "support.files"
local cjson = require "cjson"

local KEY = emulator.OVERTEN_KEY
local DONE_RUN = "run_01M7VYMXVZMEN04XFYBRPG8T29"     -- completed, word
local RUNNING_RUN = "run_01M7WXHP7C6A8RP4X3MQGYBVPZ"

describe("bearer.overten files #integration", function()
  local emu, dir

  setup(function()
    emu = emulator.start()
    dir = files.tmpdir()
  end)
  teardown(function()
    emu:stop()
    files.remove(dir)
  end)
  before_each(function()
    emu:reset()
    os.execute("rm -rf " .. dir .. "/*")
  end)

  local function client(opts)
    opts = opts or {}
    opts.api_key = KEY
    opts.base_url = emu:overten_url()
    opts.sleep = function() end
    return overten.client(opts)
  end

  local read = files.read

  local function write(name, content) return files.write(dir .. "/" .. name, content) end

  local function listing()
    local p = io.popen("ls -A " .. dir)
    local names = {}
    for line in p:lines() do names[#names + 1] = line end
    p:close()
    table.sort(names)
    return names
  end

  local function no_credentials(r)
    assert.is_nil(r.headers.authorization)
    assert.is_nil(r.headers["x-api-key"])
  end

  describe("download", function()
    it("reports progress with growing counts and the right total for an 8 MB file", function()
      local size = 8 * 1024 * 1024
      emu:fault{ path = "/files-cdn/*", type = "huge", bytes = size }
      local seen = {}
      local path = dir .. "/big.docx"
      local res = assert(client():download(DONE_RUN, path, { on_progress = function(done, total)
        seen[#seen + 1] = { done = done, total = total }
      end }))
      assert.equal(size, res.bytes)
      assert.is_true(#seen >= 1)
      for i = 2, #seen do assert.is_true(seen[i].done >= seen[i - 1].done) end
      assert.same({ done = size, total = size }, seen[#seen])
      assert.has_error(function() client():download(DONE_RUN, path .. "2", { on_progress = 1 }) end)
    end)

    it("reports progress of an upload", function()
      write("up.txt", ("x"):rep(300000))
      local last
      assert(client():upload(dir .. "/up.txt", { on_progress = function(done, total)
        last = { done, total }
      end }))
      assert.is_true(last[1] >= 300000, tostring(last[1]))
    end)

    it("follows the 302 itself and streams the file to disk", function()
      local path = dir .. "/memo.docx"
      local res = assert(client():download(DONE_RUN, path))
      assert.equal(path, res.path)
      assert.equal("Quarterly board memo.docx", res.filename)
      local body = read(path)
      assert.equal("PK\3\4", body:sub(1, 4))
      assert.equal(#body, res.bytes)
      assert.same({ "memo.docx" }, listing())
      assert.truthy(emu:requests("/api/v1/runs/" .. DONE_RUN .. "/download")[1].headers.authorization)
    end)

    it("sends no credential to the redirect target, with either auth header", function()
      for _, auth in ipairs{ "bearer", "x-api-key" } do
        emu:reset()
        assert(client{ auth = auth }:download(DONE_RUN, dir .. "/" .. auth .. ".docx"))
        local cdn = emu:requests("/files-cdn/" .. DONE_RUN)
        assert.equal(1, #cdn)
        no_credentials(cdn[1])
      end
    end)

    it("resolves a relative Location and still sends no credential", function()
      emu:fault{ path = "/api/v1/runs/" .. DONE_RUN .. "/download", type = "redirect", location = "/echo/cdn?sig=1" }
      local path = dir .. "/echo.json"
      assert(client():download(DONE_RUN, path))
      local echo = cjson.decode(read(path))
      assert.equal("/echo/cdn", echo.path)
      assert.is_nil(echo.headers.authorization)
      assert.is_nil(echo.headers["x-api-key"])
    end)

    it("leaves neither the file nor a .part behind when the transfer fails", function()
      emu:fault{ path = "/files-cdn/*", type = "truncate", times = -1 }
      local path = dir .. "/broken.docx"
      local res, err = client():download(DONE_RUN, path)
      assert.is_nil(res)
      assert.equal("connection", err.kind)
      assert.same({}, listing())
      assert.equal(3, #emu:requests("/files-cdn/" .. DONE_RUN))   -- retried, each from scratch
    end)

    it("keeps an existing file when a download fails, replaces it when one succeeds", function()
      local path = write("keep.docx", "old")
      emu:fault{ path = "/files-cdn/*", type = "status", status = 403 }
      local res, err = client():download(DONE_RUN, path)
      assert.is_nil(res)
      assert.equal("permission", err.kind)
      assert.equal("old", read(path))
      assert.same({ "keep.docx" }, listing())
      assert(client():download(DONE_RUN, path))
      assert.equal("PK\3\4", read(path):sub(1, 4))
    end)

    it("returns the API's error for a run without an artifact", function()
      local res, err = client():download(RUNNING_RUN, dir .. "/x.docx")
      assert.is_nil(res)
      assert.equal("conflict", err.kind)
      assert.same({}, listing())
      res, err = client():download("run_nope", dir .. "/x.docx")
      assert.is_nil(res)
      assert.equal("not_found", err.kind)
    end)
  end)

  describe("upload and convert", function()
    it("uploads a file as multipart with its purpose", function()
      local path = write("data.csv", "a,b\n1,2\n")
      local f = assert(client():upload(path, { purpose = "reference" }))
      assert.truthy(f.file_id:find("^file_"))
      assert.equal("data.csv", f.filename)
      assert.equal(8, f.size)
      assert.equal("reference", f.purpose)
      local seen = emu:requests("/api/v1/files")[1]
      assert.truthy(seen.headers["content-type"]:find("^multipart/form%-data"))
    end)

    it("returns 413 when the file is over the tier's limit, and file errors without a request", function()
      emu:control("POST", "/overten/orgs/org_test", { upload_limit = 4 })
      local res, err = client():upload(write("big.csv", "12345"))
      assert.is_nil(res)
      assert.equal("too_large", err.kind)
      assert.equal(413, err.status)
      assert.equal("payload_too_large", err.code)
      emu:control("DELETE", "/requests")
      res, err = client():upload(dir .. "/missing.csv")
      assert.is_nil(res)
      assert.equal("file_unreadable", err.code)
      assert.equal(0, #emu:requests())
    end)

    it("converts an uploaded file and downloads the result without the key", function()
      local c = client()
      local f = assert(c:upload(write("memo.docx", "PK\3\4docx"), { purpose = "reference" }))
      local conv = assert(c:convert(f.file_id, "pdf"))
      assert.equal("docx", conv.source_format)
      assert.equal("pdf", conv.format)
      assert.truthy(conv.expires_at)
      assert(c:save(conv.download_url, dir .. "/memo.pdf"))
      no_credentials(emu:requests("/files-cdn/conv_" .. f.file_id .. "_pdf")[1])
      local res, err = c:convert(f.file_id, "mp3")
      assert.is_nil(res)
      assert.equal("validation", err.kind)
      assert.equal("invalid_request", err.code)
      assert.truthy(err.message:find("pdf, html, txt, odt", 1, true))
      res, err = c:convert("file_nope", "pdf")
      assert.is_nil(res)
      assert.equal("not_found", err.kind)
    end)
  end)

  describe("export", function()
    it("exports a completed run, and refuses bad pairs and unfinished runs", function()
      local c = client()
      local exp = assert(c:export(DONE_RUN, "pdf"))
      assert.equal("docx", exp.source_format)
      assert.equal("pdf", exp.format)
      assert(c:save(exp.download_url, dir .. "/memo.pdf"))
      local res, err = c:export(DONE_RUN, "png")
      assert.is_nil(res)
      assert.equal("invalid_request", err.code)
      res, err = c:export(RUNNING_RUN, "pdf")
      assert.is_nil(res)
      assert.equal("conflict", err.kind)
      assert.equal(409, err.status)
      res, err = c:export("run_nope", "pdf")
      assert.is_nil(res)
      assert.equal("not_found", err.kind)
      res, err = c:export(DONE_RUN, "")
      assert.is_nil(res)
      assert.equal("invalid_argument", err.code)
    end)
  end)

  describe("images", function()
    it("uploads, lists, reads and deletes images; a deleted image is gone (410)", function()
      local c = client()
      local img = assert(c:upload_image(write("shot.png", "\137PNG...."), { tags = { "product", "hero" },
                                                                            caption = "Hero shot" }))
      assert.truthy(img.image_id)
      assert.same({ "product", "hero" }, img.tags)
      assert.equal("Hero shot", img.caption)
      local other = assert(c:upload_image(write("b.png", "\137PNG"), { tags = { "team" } }))
      local ids = {}
      for i in c:images() do ids[#ids + 1] = i.image_id end
      assert.same({ other.image_id, img.image_id }, ids)
      ids = {}
      for i in c:images{ tag = "hero" } do ids[#ids + 1] = i.image_id end
      assert.same({ img.image_id }, ids)
      assert.equal("shot.png", assert(c:image(img.image_id)).filename)
      assert.is_true(assert(c:delete_image(img.image_id)))
      local res, err = c:image(img.image_id)
      assert.is_nil(res)
      assert.equal("gone", err.kind)
      assert.equal(410, err.status)
      res, err = c:delete_image("img_nope")
      assert.is_nil(res)
      assert.equal("not_found", err.kind)
    end)

    it("uses uploaded images and files in a generation (preflight passes)", function()
      local c = client()
      local img = assert(c:upload_image(write("shot.png", "\137PNG")))
      local r = assert(c:generate("slides", { prompt = "Deck with product screenshots",
                                             image_assets = { { image_id = img.image_id, tags = { "x" } } } }))
      assert.equal("completed", r.status)
      local res, err = c:generate("slides", { prompt = "Deck", image_assets = { { image_id = "img_nope" } } })
      assert.is_nil(res)
      assert.equal("not_found", err.kind)
    end)
  end)
end)
