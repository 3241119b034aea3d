-- https: certificate verification on by default, ca_file to trust a
-- private CA, and a failed verification is a `tls` error, never retried.
local bearer = require "bearer"
local emulator = require "support.emulator"
local files = require "support.files"

describe("https #integration", function()
  local dir, server, tls_url

  local function sh(cmd)
    assert(os.execute(cmd .. " >/dev/null 2>&1"), cmd)
  end

  setup(function()
    dir = files.tmpdir()
    sh("chmod 755 " .. dir)   -- nginx workers (nobody) read the certificate
    sh(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
        .. "-addext subjectAltName=IP:127.0.0.1,DNS:localhost "
        .. "-keyout %s/key.pem -out %s/cert.pem"):format(dir, dir))
    sh("chmod 644 " .. dir .. "/key.pem")   -- nginx workers (nobody) read it
    for _ = 1, 5 do
      local port = math.random(20000, 60999)
      -- the TLS port is the template's own: another try when it is taken
      server = emulator.try_start({ BEARER_TLS_DIR = dir, BEARER_TLS_PORT = port },
                                  emulator.ROOT .. "/spec/nginx/tls.conf.in")
      if server then
        tls_url = "https://127.0.0.1:" .. port
        return
      end
    end
    error("no https server")
  end)
  teardown(function()
    if server then server:stop() end
    files.remove(dir)
  end)

  it("refuses a certificate it cannot verify, without retrying", function()
    local slept = 0
    local c = bearer.client{ base_url = tls_url, key = emulator.OVERTEN_KEY,
                             sleep = function() slept = slept + 1 end }
    local res, err = c:get("/x")
    assert.is_nil(res)
    assert.equal("tls", err.kind)
    assert.equal("tls_verify_failed", err.code)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.equal(0, slept)
  end)

  it("trusts a private CA given as ca_file, and sends the key over https", function()
    local c = bearer.client{ base_url = tls_url, key = emulator.OVERTEN_KEY, ca_file = dir .. "/cert.pem" }
    local res = assert(c:get("/x"))
    assert.equal("https", res.json.scheme)
    assert.equal("Bearer " .. emulator.OVERTEN_KEY, res.json.authorization)
  end)

  it("runs https calls inside nginx on the worker's engine (TLS, HTTP/2, at once)", function()
    local res = assert(bearer.client{ base_url = server.url, max_retries = 0, timeout = 20 }
                         :get("/via_bearer"))
    assert.matches("bearer.Engine(nginx,", res.json.engine, 1, true)
    assert.equal(5, #res.json.results)
    for _, r in ipairs(res.json.results) do
      assert.equal("https", r.scheme)
      assert.equal("HTTP/2.0", r.protocol)
      assert.equal("Bearer " .. emulator.OVERTEN_KEY, r.authorization)
    end
  end)
end)
