-- wrk script: the reev UI's polling pattern, rotating over its routes.
-- ETAG=1 in the environment sends If-None-Match with the ETag last seen per route.
local paths = {}
local etags = {}
local i = 0
local conditional = os.getenv("ETAG") == "1"

init = function(args)
  for _, p in ipairs(args) do table.insert(paths, p) end
end

request = function()
  i = i % #paths + 1
  local headers = {}
  if conditional and etags[i] then headers["If-None-Match"] = etags[i] end
  return wrk.format("GET", paths[i], headers)
end

response = function(status, headers, body)
  if headers["ETag"] or headers["etag"] then etags[i] = headers["ETag"] or headers["etag"] end
  if status >= 500 then print("server error " .. status) end
end
