-- wrk script for bench/http.sh: POST a small chat completion, with the tenant key in
-- the KEY environment variable (the stand-in ignores it).
wrk.method = "POST"
wrk.body = '{"model":"auto","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("KEY")
if key then
  wrk.headers["Authorization"] = "Bearer " .. key
end
