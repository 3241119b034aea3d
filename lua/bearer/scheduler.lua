--- bearer.scheduler: concurrency from plain Lua, on the transfer engine.
--
--   local values, errs = bearer.gather({ f1, f2, f3 }, { concurrency = 16 })
--
-- Each function runs in a coroutine of its own. Whatever bearer does inside
-- it that waits (a transfer, a retry's backoff, a rate-limit slot) asks the
-- host, and the plain host asks this module: inside a gather task the wait
-- yields here, so the other tasks run; outside one it blocks as always. So
-- the same module code serves one call and many (the cqueues / luvit shape,
-- with the curl multi engine as the executor).
--
-- The loop: resume every task that can go on (its transfer done, its sleep
-- over), then let the engine run until the next thing can happen: a
-- transfer finishing or the earliest sleep ending. No Lua runs while libcurl
-- does; the engine only reports. Inside nginx the nginx host's gather runs
-- the functions in light threads instead: there every wait already yields.
local core = require "bearer.core"

local M = {}

local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack

-- coroutine -> its task, for the coroutines gather made; weak, so a task
-- abandoned by a raising scheduler loop does not stay reachable.
local tasks = setmetatable({}, { __mode = "k" })

local WAIT_TRANSFER, WAIT_SLEEP = {}, {}   -- yield markers, unique to this module
local PROGRESS_EVERY = 0.1                  -- seconds between on_progress calls

--- The gather task running this code, or nil outside any.
---@return table|nil task
function M.current()
  return tasks[coroutine.running()]
end

-- Calls on_progress(done, total) with the transfer's download or, when
-- nothing comes back yet, upload figures; at most every PROGRESS_EVERY s.
local function report(w, final)
  if not w.on_progress then return end
  local now = core.monotime()
  if not final and now - (w.reported or 0) < PROGRESS_EVERY then return end
  w.reported = now
  local down, down_total, up, up_total = w.transfer:progress()
  if w.upload then w.on_progress(up, up_total)
  else w.on_progress(down, down_total) end
end

--- Waits until transfer t is done: yields to the scheduler inside a gather
-- task, else drives the engine here. `progress` is
-- { on_progress = fn(done, total), upload = bool } or nil.
---@param t userdata a transfer (core)
---@param progress { on_progress: fun(done: integer, total: integer|nil), upload: boolean|nil }|nil
function M.wait(t, progress)
  local w = { transfer = t, on_progress = progress and progress.on_progress,
              upload = progress and progress.upload }
  if M.current() then
    coroutine.yield(WAIT_TRANSFER, w)
  else
    local engine = core.engine()
    while not t:done() do
      engine:step(w.on_progress and PROGRESS_EVERY or 1)
      report(w)
    end
  end
  report(w, true)
end

--- Sleeps `seconds`: yields to the scheduler inside a gather task.
---@param seconds number
function M.sleep(seconds)
  if M.current() then
    coroutine.yield(WAIT_SLEEP, core.monotime() + math.max(0, seconds))
  else
    core.sleep(seconds)
  end
end

--- Checks bearer.gather's arguments (raising at the user's call);
-- returns the count of functions and the concurrency.
---@param fns (fun(): any)[]
---@param opts bearer.GatherOptions|nil
---@return integer n
---@return integer concurrency
function M.gather_args(fns, opts)
  if type(fns) ~= "table" then
    error("bad argument #1 to 'gather' (table of functions expected, got " .. type(fns) .. ")", 3)
  end
  local n = #fns
  for i = 1, n do
    if type(fns[i]) ~= "function" then
      error(("bad argument #1 to 'gather' (function expected at [%d], got %s)")
            :format(i, type(fns[i])), 3)
    end
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'gather' (table expected, got " .. type(opts) .. ")", 3)
  end
  local concurrency = opts and opts.concurrency or math.max(n, 1)
  for k in pairs(opts or {}) do
    if k ~= "concurrency" then
      error(("bad option '%s' to 'gather' (unknown option)"):format(tostring(k)), 3)
    end
  end
  if type(concurrency) ~= "number" or concurrency < 1 or concurrency % 1 ~= 0 then
    error("bad option 'concurrency' to 'gather' (positive integer expected)", 3)
  end
  return n, concurrency
end

-- What a finished function leaves: its first value, or its error (what it
-- raised, or the err of a `nil, err` return).
---@param values table
---@param errs table
---@param i integer the function's index
---@param ok boolean what pcall returned
---@param ... any the function's results (or its error)
function M.settle(values, errs, i, ok, ...)
  if not ok then
    errs[i] = (...)
  elseif (...) == nil and select("#", ...) >= 2 and select(2, ...) ~= nil then
    errs[i] = select(2, ...)
  else
    values[i] = (...)
  end
end

--- Runs fns[1..n] as gather tasks, at most `concurrency` at once: the
-- plain host's gather (arguments checked by bearer.host.gather).
---@param fns (fun(): any)[]
---@param n integer
---@param concurrency integer
---@return table values
---@return table errs
function M.run(fns, n, concurrency)
  local values, errs = {}, {}
  local active, next_i = {}, 1
  local engine = core.engine()

  local function step_task(task, ...)
    local co = task.co
    local res = pack(coroutine.resume(co, ...))
    if coroutine.status(co) == "dead" then
      tasks[co] = nil
      M.settle(values, errs, task.i, unpack(res, 1, res.n))
      return false
    end
    -- a yield of ours says what the task waits for; any other yield (user
    -- code yielding from the task itself) is answered by resuming it
    if res[2] == WAIT_TRANSFER then
      task.transfer, task.until_ = res[3], nil
    elseif res[2] == WAIT_SLEEP then
      task.transfer, task.until_ = nil, res[3]
    else
      task.transfer, task.until_ = nil, 0
    end
    return true
  end

  local function start(i)
    local task = { i = i, co = coroutine.create(fns[i]) }
    tasks[task.co] = task
    if step_task(task) then active[#active + 1] = task end
  end

  while next_i <= n and #active < concurrency do start(next_i); next_i = next_i + 1 end
  while #active > 0 do
    local now = core.monotime()
    local progressed, soonest = false, math.huge
    local k = 1
    while k <= #active do
      local task = active[k]
      local w = task.transfer
      local ready = (w and w.transfer:done()) or (task.until_ and task.until_ <= now)
      if ready then
        progressed = true
        if not step_task(task) then
          table.remove(active, k)
          if next_i <= n then start(next_i); next_i = next_i + 1 end
          k = k - 1
        end
      elseif w then
        report(w)
        if w.on_progress then soonest = math.min(soonest, now + PROGRESS_EVERY) end
      else
        soonest = math.min(soonest, task.until_)
      end
      k = k + 1
    end
    if not progressed and #active > 0 then
      local wait = math.max(0, math.min(soonest - now, 1))
      if engine:running() > 0 then engine:step(wait) else core.sleep(wait) end
    end
  end
  return values, errs
end

return M
