-- bench/report.lua RESULTS [NOTE]: the table `make bench` prints, from bench/run's results
-- file (one line a row: id, label, kind, op, target, then its pairs "a:b a:b ..." where a is
-- bearer's figure and b the anchor's from the run just after it). A row's ratio is the
-- median of a/b pair by pair; its figures are the medians of each side.
local path, note = arg[1], arg[2] or ""

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local function time_text(us)
  if us >= 10000 then return ("%.1f ms"):format(us / 1000) end
  return ("%.1f us"):format(us)
end

local FORMAT = {
  time = time_text,
  rps = function(v) return ("%.0f req/s"):format(v) end,
  p99 = function(v) return ("%.1f ms"):format(v) end,
}

local function holds(v, op, target)
  if op == "<=" then return v <= target end
  return v >= target
end

local rows, missed = {}, 0
for line in io.lines(path) do
  local id, label, kind, op, target, data = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t?(.*)$")
  local r = { label = label }
  if kind == "skip" then
    r.ours, r.anchor, r.ratio, r.target, r.result = "-", "-", "-", "-", "skipped"
  elseif kind == "rss" then
    local hwm, first, last = data:match("^(%d+):(%d+):(%d+)$")
    if not hwm then
      r.ours, r.anchor, r.ratio, r.target, r.result = "failed", "-", "-", "<= 12 MiB, flat", "FAIL"
    else
      hwm, first, last = tonumber(hwm) / 1024, tonumber(first) / 1024, tonumber(last) / 1024
      local flat = last / first
      r.ours = ("peak %.1f MiB"):format(hwm)
      r.anchor = ("RSS first 10 %% %.1f, last 10 %% %.1f MiB"):format(first, last)
      r.ratio = ("last/first %.3f"):format(flat)
      r.target = ("<= %s MiB, last/first <= 1.02"):format(target)
      r.result = (hwm <= tonumber(target) and flat <= 1.02) and "pass" or "MISS"
    end
  else
    local a, b, ratios, failed = {}, {}, {}, false
    for x, y in data:gmatch("([^%s:]+):([^%s:]+)") do
      x, y = tonumber(x), tonumber(y)
      if not (x and y and y > 0) then failed = true
      else a[#a + 1], b[#b + 1], ratios[#ratios + 1] = x, y, x / y end
    end
    if failed or #ratios == 0 then
      r.ours, r.anchor, r.ratio, r.target, r.result = "failed", "-", "-", op .. " " .. target, "FAIL"
    else
      local fmt = FORMAT[kind == "rps" and "rps" or kind == "p99" and "p99" or "time"]
      local ratio = median(ratios)
      table.sort(ratios)
      r.ours, r.anchor = fmt(median(a)), fmt(median(b))
      r.ratio = ("%.2fx (%.2f-%.2f)"):format(ratio, ratios[1], ratios[#ratios])
      if op == "info" then
        r.target, r.result = "-", "info"
      else
        r.target = op .. " " .. target .. "x"
        r.result = holds(ratio, op, tonumber(target)) and "pass" or "MISS"
      end
    end
  end
  if r.result == "MISS" or r.result == "FAIL" then missed = missed + 1 end
  r.id = id
  rows[#rows + 1] = r
end

local out = { "| row | bearer | anchor | ratio (min-max) | target | result |",
              "|---|---|---|---|---|---|" }
for _, r in ipairs(rows) do
  out[#out + 1] = ("| %s | %s | %s | %s | %s | %s |"):format(r.label, r.ours, r.anchor, r.ratio, r.target, r.result)
end
print(table.concat(out, "\n"))
print(("\n%d of %d rows miss their target (%s; figures are medians, ratios the median of paired runs)")
  :format(missed, #rows, note))
