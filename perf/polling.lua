-- wrk script: the reev UI's polling pattern, rotating over its routes.
-- ETAG=1 in the environment sends If-None-Match with the ETag last seen for the route's scope.
-- A path argument may start with its scope letter, `e=/api/...`: reev-api's ETags start with
-- it (`W/"e...`: one execution, `b`: one benchmark, `r`: finished results, `g`: any data).
-- wrk's response() is not told which request it answers (a thread's connections interleave),
-- so an ETag is filed under the letter it carries and sent with the paths of that letter;
-- each scope in one run names one resource (one execution, one benchmark), so that is exact.
-- At the end it prints one line `status_counts 200=N 304=N other=N` (all threads).
local paths = {}
local scopes = {}
local etags = {}
local i = 0
local conditional = os.getenv("ETAG") == "1"
local threads = {}

-- per-thread counters (globals, so that done() can read them with thread:get)
n200, n304, nother = 0, 0, 0

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  for _, p in ipairs(args) do
    local letter, path = string.match(p, "^(%a)=(/.*)$")
    table.insert(paths, path or p)
    table.insert(scopes, letter or "g")
  end
end

request = function()
  i = i % #paths + 1
  local headers = {}
  if conditional and etags[scopes[i]] then headers["If-None-Match"] = etags[scopes[i]] end
  return wrk.format("GET", paths[i], headers)
end

response = function(status, headers, body)
  local tag = headers["ETag"] or headers["etag"]
  if tag then etags[string.match(tag, '^W/"(%a)') or "g"] = tag end
  if status == 200 then n200 = n200 + 1
  elseif status == 304 then n304 = n304 + 1
  else nother = nother + 1 end
  if status >= 500 then print("server error " .. status) end
end

done = function(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + (t:get("n200") or 0)
    b = b + (t:get("n304") or 0)
    c = c + (t:get("nother") or 0)
  end
  io.write(string.format("status_counts 200=%d 304=%d other=%d\n", a, b, c))
end
